"""Captioned shapes: determinism, captions that parse back to the attribute table, held-out combinations
absent from the train split, renders with the stated geometry, and attributes measured back from pixels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from torchdiffusion.data import DATASETS, load_dataset
from torchdiffusion.data.shapes import (
    COLOUR,
    COLOUR_NAMES,
    DEFAULT_HELDOUT,
    NUM_LABELS,
    POSITION,
    POSITIONS,
    SHAPE,
    SHAPES,
    SIZE,
    SIZE_RANGES,
    SIZES,
    ShapesData,
    attribute_accuracy,
    caption,
    heldout_mask,
    load_shapes,
    measure_attributes,
    parse_caption,
    render,
    sort_by_position,
)


@pytest.fixture(scope="module")
def data() -> ShapesData:
    return load_shapes(600, seed=11)


def test_images_are_float32_in_range_with_black_background(data):
    assert data.images.shape == (600, 3, 32, 32) and data.images.dtype == torch.float32
    assert data.images.min() == -1 and data.images.max() <= 1
    assert data.labels.dtype == torch.int64 and data.attributes.shape == (600, 2, 4)
    assert load_shapes(4, seed=0, size=64).images.shape == (4, 3, 64, 64)


def test_same_seed_same_data_and_another_seed_other_data(data):
    again = load_shapes(600, seed=11)
    assert torch.equal(again.images, data.images) and again.captions == data.captions
    assert torch.equal(again.attributes, data.attributes)
    assert not torch.equal(load_shapes(600, seed=12).images, data.images)


def test_captions_parse_back_to_the_attribute_table(data):
    for text, row in zip(data.captions, data.attributes.numpy()):
        np.testing.assert_array_equal(parse_caption(text), row)
        assert caption(row) == text
    assert caption(np.array([[0, 0, 1, 0], [1, 2, 0, 3]])) == (
        "a large red circle at the top left and a small blue square at the bottom right")
    assert caption(np.array([[2, 3, 0, 4], [-1, -1, -1, -1]])) == "a small yellow triangle in the centre"
    with pytest.raises(ValueError):
        parse_caption("a large red hexagon at the top left")


def test_attribute_table_is_well_formed(data):
    a = data.attributes
    present = a[..., SHAPE] >= 0
    assert present[:, 0].all()
    for col, names in ((SHAPE, SHAPES), (COLOUR, COLOUR_NAMES), (SIZE, SIZES), (POSITION, POSITIONS)):
        values = a[..., col][present]
        assert set(values.tolist()) == set(range(len(names)))  # every value occurs
    assert (a[~present] == -1).all()
    two = present[:, 1]
    assert 0.35 < two.float().mean() < 0.65
    # two shapes sit on two different corners, never the centre, so they cannot touch
    assert (a[two][:, 0, POSITION] != a[two][:, 1, POSITION]).all()
    assert (a[two][..., POSITION] < 4).all()
    assert torch.equal(data.labels, a[:, 0, COLOUR] * len(SHAPES) + a[:, 0, SHAPE])
    assert 0 <= data.labels.min() and data.labels.max() < NUM_LABELS


def test_max_shapes_one_gives_single_shapes():
    a = load_shapes(200, seed=1, max_shapes=1).attributes
    assert (a[:, 1] == -1).all() and (a[:, 0, SHAPE] >= 0).all()


def pairs_in(captions: list[str]) -> set[tuple[str, str]]:
    """(colour, shape) pairs named by the captions, read from the text alone."""
    out = set()
    for text in captions:
        for shape, colour, _, _ in parse_caption(text).tolist():
            if shape >= 0:
                out.add((COLOUR_NAMES[colour], SHAPES[shape]))
    return out


def test_train_split_never_shows_a_heldout_combination_and_heldout_split_always_does():
    train = load_shapes(1500, seed=3, split="train")
    test = load_shapes(300, seed=4, split="heldout")
    held = set(DEFAULT_HELDOUT)
    seen = pairs_in(train.captions)
    assert not seen & held
    # every colour and every shape is still trained on, in the other combinations
    assert seen == {(c, s) for c in COLOUR_NAMES for s in SHAPES} - held
    for text in test.captions:
        assert pairs_in([text]) & held
    assert pairs_in(test.captions) >= held
    assert heldout_mask(load_shapes(300, seed=5).attributes).any()  # the "all" split has them
    custom = load_shapes(300, seed=6, split="train", heldout=[("cyan", "circle")])
    assert ("cyan", "circle") not in pairs_in(custom.captions) and ("red", "triangle") in pairs_in(custom.captions)
    with pytest.raises(ValueError):
        load_shapes(10, split="heldout", heldout=[("pink", "circle")])


@pytest.mark.parametrize("shape, fill", [("circle", math.pi / 4), ("square", 1.0), ("triangle", 0.5)])
@pytest.mark.parametrize("size", [0, 1])
def test_rendered_area_is_the_shape_area(shape, fill, size):
    """Coverage summed over pixels is fill * (2s)^2 with s in the size's range: the geometry as documented."""
    n, H = 64, 64
    a = np.full((n, 2, 4), -1)
    a[:, 0] = SHAPES.index(shape), 0, size, 4
    x = render(a, size=H, seed=0)
    coverage = (x[:, 0] + 1) / 2 / 0.9  # red channel of red (0.9 in [0, 1]) over black
    area = coverage.sum((1, 2))
    lo, hi = (fill * (2 * s * H) ** 2 for s in SIZE_RANGES[size])
    assert (area > 0.97 * lo).all() and (area < 1.03 * hi).all()
    assert area.std() > 0  # sizes vary within the class


def test_measure_attributes_reads_clean_renders_exactly(data):
    assert attribute_accuracy(measure_attributes(data.images), data.attributes)["all"] == 1.0
    big = load_shapes(150, seed=2, size=64)
    assert attribute_accuracy(measure_attributes(big.images), big.attributes)["all"] == 1.0


def test_measure_attributes_degrades_gracefully_with_noise(data):
    g = torch.Generator().manual_seed(0)
    x, a = data.images[:300], data.attributes[:300]
    acc = {s: attribute_accuracy(measure_attributes(x + s * torch.randn(x.shape, generator=g)), a)
           for s in (0.1, 0.3, 1.0)}
    assert acc[0.1]["all"] > 0.97
    assert acc[0.3]["colour"] > 0.97 and acc[0.3]["position"] > 0.97 and acc[0.3]["shape"] > 0.8
    assert acc[1.0]["all"] < acc[0.3]["all"] < acc[0.1]["all"]


def test_measure_attributes_on_empty_and_garbage_images():
    empty = -torch.ones(2, 3, 32, 32)
    assert (measure_attributes(empty) == -1).all()
    wild = 5 * torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    m = measure_attributes(wild)
    assert m.shape == (3, 2, 4) and m.dtype == torch.int64


def test_attribute_accuracy_compares_shapes_in_position_order():
    a = torch.tensor([[[0, 1, 1, 3], [2, 0, 0, 0]], [[1, 5, 0, 4], [-1, -1, -1, -1]]])
    assert sort_by_position(a)[0, 0].tolist() == [2, 0, 0, 0]
    assert attribute_accuracy(sort_by_position(a), a) == {"shape": 1, "colour": 1, "size": 1, "position": 1, "all": 1}
    wrong = sort_by_position(a).clone()
    wrong[1, 0, COLOUR] = 2
    acc = attribute_accuracy(wrong, a)
    assert acc["colour"] == pytest.approx(2 / 3) and acc["shape"] == 1 and acc["all"] == 0.5
    extra = sort_by_position(a).clone()
    extra[1, 1] = torch.tensor([0, 0, 0, 0])
    assert attribute_accuracy(extra, a)["all"] == 0.5


def test_registered_in_load_dataset_with_the_data_labels_contract(data):
    assert "shapes" in DATASETS
    x, y = load_dataset("shapes", n=600, seed=11)
    assert torch.equal(x, data.images) and torch.equal(y, data.labels)
    sub = data.select(data.labels == data.labels[0])
    assert len(sub) == int((data.labels == data.labels[0]).sum()) and (sub.labels == data.labels[0]).all()
    assert sub.captions[0] == data.captions[0]
