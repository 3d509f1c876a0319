"""Procedural captioned shapes: coloured circles, squares and triangles on a black canvas, with captions.

`load_shapes(n, seed, size) -> ShapesData(images, labels, captions, attributes)`: images (N, 3, H, W) float32
in [-1, 1]; captions like "a large red circle at the top left and a small blue square at the bottom right";
attributes (N, MAX_SHAPES, 4) int64 rows (shape, colour, size, position) in caption order, -1 rows for absent
shapes. `split=` holds out colour x shape combinations so that compositional generalisation can be scored,
and `measure_attributes` reads the attributes back from pixels by direct measurement.

Geometry, in units of the canvas side H: a shape fills a box of half-width s centred on its anchor plus a
small jitter, s in [0.16, 0.20] (large) or [0.08, 0.11] (small). A circle has radius s, a square half-side s,
a triangle points up with base 2s and height 2s, so the box fill ratios are pi/4, 1 and 1/2. One shape sits at
any of five anchors; two shapes sit at two different corner anchors, so they never touch. Edges are
anti-aliased by 4x4 supersampling.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

Tensor = torch.Tensor

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
COLOURS: dict[str, tuple[float, float, float]] = {   # RGB in [0, 1], far apart in direction (chromaticity)
    "red": (0.90, 0.10, 0.10),
    "green": (0.10, 0.80, 0.10),
    "blue": (0.10, 0.30, 1.00),
    "yellow": (0.95, 0.90, 0.10),
    "purple": (0.60, 0.10, 0.80),
    "cyan": (0.10, 0.85, 0.90),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
SIZES: tuple[str, ...] = ("small", "large")
POSITIONS: tuple[str, ...] = ("top left", "top right", "bottom left", "bottom right", "centre")
ANCHORS = np.array([(0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75), (0.5, 0.5)])  # (row, col) / H
CORNERS = 4                                       # positions 0..3 are the corners
SIZE_RANGES = ((0.08, 0.11), (0.16, 0.20))        # half-width s / H, per size id
JITTER = 0.08                                     # max anchor offset / H per axis (less if the quadrant is tight)
MAX_SHAPES = 2
SHAPE, COLOUR, SIZE, POSITION = range(4)          # columns of the attribute table
FILL_RATIOS = (np.pi / 4, 1.0, 0.5)               # area / box area, per shape id
TRIANGLE_SKEW = -2 * np.sqrt(2) / 5               # skewness of the row profile of an upright triangle (density 2y)
NUM_LABELS = len(COLOURS) * len(SHAPES)           # label = colour * len(SHAPES) + shape of the first shape
# Held out of the "train" split by default: each colour at most once, each shape at least once.
DEFAULT_HELDOUT: tuple[tuple[str, str], ...] = (("red", "triangle"), ("green", "circle"),
                                                 ("blue", "square"), ("yellow", "triangle"))
_SUPERSAMPLE = 4
_CHUNK = 1024                                      # images rasterized at once (bounds memory)


@dataclass(frozen=True)
class ShapesData:
    """A captioned shapes set: images (N, 3, H, W) float32 in [-1, 1], labels (N,) int64, captions, attributes."""

    images: Tensor
    labels: Tensor          # colour * len(SHAPES) + shape of the first shape; NUM_LABELS classes
    captions: list[str]
    attributes: Tensor      # (N, MAX_SHAPES, 4) int64: (shape, colour, size, position), -1 rows where absent

    def __len__(self) -> int:
        return len(self.captions)

    def select(self, index: Tensor | slice) -> ShapesData:
        """The subset at `index` (a slice, an int64 index tensor or a bool mask)."""
        if isinstance(index, Tensor) and index.dtype == torch.bool:
            index = index.nonzero().squeeze(1)
        captions = self.captions[index] if isinstance(index, slice) else [self.captions[i] for i in index.tolist()]
        return ShapesData(self.images[index], self.labels[index], captions, self.attributes[index])


# ------------------------------------------------------------------------------------------- attributes


def _pair_ids(heldout: tuple[tuple[str, str], ...]) -> set[tuple[int, int]]:
    """(colour, shape) names -> (shape id, colour id) pairs."""
    for colour, shape in heldout:
        if colour not in COLOURS or shape not in SHAPES:
            raise ValueError(f"unknown held-out pair ({colour!r}, {shape!r}); colours {COLOUR_NAMES}, shapes {SHAPES}")
    return {(SHAPES.index(shape), COLOUR_NAMES.index(colour)) for colour, shape in heldout}


def heldout_mask(attributes: Tensor | np.ndarray, heldout: tuple[tuple[str, str], ...] = DEFAULT_HELDOUT) -> Tensor:
    """(N,) bool: True where any shape of the image is a held-out (colour, shape) combination."""
    a = torch.as_tensor(attributes)
    hit = torch.zeros(a.shape[:2], dtype=torch.bool)
    for shape, colour in _pair_ids(heldout):
        hit |= (a[..., SHAPE] == shape) & (a[..., COLOUR] == colour)
    return hit.any(1)


def _sample_attributes(n: int, max_shapes: int, rng: np.random.Generator) -> np.ndarray:
    """(n, MAX_SHAPES, 4) int64: 1..max_shapes shapes, uniform attributes, two shapes on distinct corners."""
    a = np.full((n, MAX_SHAPES, 4), -1, dtype=np.int64)
    count = rng.integers(1, max_shapes + 1, size=n)
    for k in range(MAX_SHAPES):
        a[:, k, SHAPE] = rng.integers(len(SHAPES), size=n)
        a[:, k, COLOUR] = rng.integers(len(COLOURS), size=n)
        a[:, k, SIZE] = rng.integers(len(SIZES), size=n)
    corners = np.argsort(rng.random((n, CORNERS)), axis=1)[:, :MAX_SHAPES]   # distinct corners per image
    a[:, :, POSITION] = corners
    single = count == 1
    a[single, 0, POSITION] = rng.integers(len(POSITIONS), size=int(single.sum()))
    a[count < 2, 1:] = -1
    return a


def sample_attributes(n: int, seed: int = 0, max_shapes: int = MAX_SHAPES, split: str = "all",
                      heldout: tuple[tuple[str, str], ...] = DEFAULT_HELDOUT) -> np.ndarray:
    """(n, MAX_SHAPES, 4) attribute rows; "train" has no held-out combination, "heldout" one in every image."""
    if split not in ("all", "train", "heldout"):
        raise ValueError(f"split must be 'all', 'train' or 'heldout', got {split!r}")
    if not 1 <= max_shapes <= MAX_SHAPES:
        raise ValueError(f"max_shapes must be in [1, {MAX_SHAPES}], got {max_shapes}")
    rng = np.random.default_rng([seed, 0x5A4E])
    a = _sample_attributes(n, max_shapes, rng)
    if split == "heldout" and not heldout:
        raise ValueError("the heldout split needs at least one held-out combination")
    if split == "all" or not heldout:
        return a
    pairs = np.array(sorted(_pair_ids(heldout)))
    for _ in range(1000):  # redraw offending rows
        bad = heldout_mask(a, heldout).numpy() == (split == "train")
        if not bad.any():
            return a
        a[bad] = _sample_attributes(int(bad.sum()), max_shapes, rng)
        if split == "heldout":  # put a held-out pair on one present shape, either slot
            idx = np.flatnonzero(bad)
            slot = rng.integers((a[idx, :, SHAPE] >= 0).sum(1))
            a[idx[:, None], slot[:, None], [SHAPE, COLOUR]] = pairs[rng.integers(len(pairs), size=len(idx))]
    raise RuntimeError("could not draw attributes for the split")  # unreachable for sane held-out sets


def caption(attributes: np.ndarray | Tensor) -> str:
    """One image's caption from its (MAX_SHAPES, 4) attribute rows, e.g. "a small blue square in the centre"."""
    parts = []
    for shape, colour, size, position in np.asarray(attributes).tolist():
        if shape < 0:
            continue
        where = "in the centre" if POSITIONS[position] == "centre" else f"at the {POSITIONS[position]}"
        parts.append(f"a {SIZES[size]} {COLOUR_NAMES[colour]} {SHAPES[shape]} {where}")
    return " and ".join(parts)


_PHRASE = re.compile(rf"a ({'|'.join(SIZES)}) ({'|'.join(COLOUR_NAMES)}) ({'|'.join(SHAPES)}) "
                     rf"(?:at the|in the) ({'|'.join(POSITIONS)})")


def parse_caption(text: str) -> np.ndarray:
    """Inverse of `caption`: (MAX_SHAPES, 4) attribute rows, -1 where absent. Raises ValueError on other text."""
    phrases = text.split(" and ")
    matches = [_PHRASE.fullmatch(p) for p in phrases]
    if not 1 <= len(phrases) <= MAX_SHAPES or not all(matches):
        raise ValueError(f"not a shapes caption: {text!r}")
    a = np.full((MAX_SHAPES, 4), -1, dtype=np.int64)
    for k, m in enumerate(matches):
        size, colour, shape, position = m.groups()
        a[k] = SHAPES.index(shape), COLOUR_NAMES.index(colour), SIZES.index(size), POSITIONS.index(position)
    return a


# ------------------------------------------------------------------------------------------- rendering


def _coverage(shape: np.ndarray, cy: np.ndarray, cx: np.ndarray, s: np.ndarray, H: int) -> np.ndarray:
    """(n, H, H) fraction of each pixel inside the shape, by 4x4 supersampling; lengths in pixels."""
    u = (np.arange(H * _SUPERSAMPLE) + 0.5) / _SUPERSAMPLE  # subpixel centres
    dy = u[None, :, None] - cy[:, None, None]               # (n, HS, 1)
    dx = u[None, None, :] - cx[:, None, None]               # (n, 1, HS)
    s = s[:, None, None]
    inside = np.empty((len(shape), H * _SUPERSAMPLE, H * _SUPERSAMPLE), dtype=bool)
    for t, name in enumerate(SHAPES):
        k = shape == t
        if not k.any():
            continue
        ky, kx, ks = dy[k], dx[k], s[k]
        if name == "circle":
            inside[k] = ky**2 + kx**2 <= ks**2
        elif name == "square":
            inside[k] = (np.abs(ky) <= ks) & (np.abs(kx) <= ks)
        else:  # apex at (cy - s, cx), base from cx - s to cx + s at cy + s
            inside[k] = (np.abs(ky) <= ks) & (2 * np.abs(kx) <= ky + ks)
    return inside.reshape(len(shape), H, _SUPERSAMPLE, H, _SUPERSAMPLE).mean((2, 4))


def render(attributes: np.ndarray, size: int = 32, seed: int = 0) -> Tensor:
    """(N, 3, size, size) float32 in [-1, 1] from (N, MAX_SHAPES, 4) attribute rows; jitter drawn from `seed`."""
    a = np.asarray(attributes)
    rng = np.random.default_rng([seed, 0x7E17])
    n, H = len(a), size
    lo, hi = np.array(SIZE_RANGES).T                          # per size id
    palette = np.array(list(COLOURS.values()))               # (C, 3)
    out = np.zeros((n, H, H, 3), dtype=np.float32)           # [0, 1], black background
    for k in range(MAX_SHAPES):
        present = a[:, k, SHAPE] >= 0
        size_id = np.maximum(a[:, k, SIZE], 0)
        s = rng.uniform(lo[size_id], hi[size_id])                          # (n,) half-width / H
        room = np.clip(0.25 - s - 1.0 / H, 0.0, JITTER)                      # keep a corner shape in its quadrant
        offset = rng.uniform(-1.0, 1.0, size=(n, 2)) * room[:, None]
        centre = (ANCHORS[np.maximum(a[:, k, POSITION], 0)] + offset) * H  # (n, 2) pixels (row, col)
        for start in range(0, n, _CHUNK):
            idx = np.flatnonzero(present[start:start + _CHUNK]) + start
            if len(idx) == 0:
                continue
            cov = _coverage(a[idx, k, SHAPE], centre[idx, 0], centre[idx, 1], s[idx] * H, H)
            out[idx] += cov[..., None] * palette[a[idx, k, COLOUR]][:, None, None, :].astype(np.float32)
    x = torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
    return x.mul_(2.0).sub_(1.0).clamp_(-1.0, 1.0)


def load_shapes(n: int = 20000, seed: int = 0, size: int = 32, max_shapes: int = MAX_SHAPES, split: str = "all",
                heldout: tuple[tuple[str, str], ...] = DEFAULT_HELDOUT) -> ShapesData:
    """n captioned images drawn from `seed`; split "train" excludes, "heldout" requires, held-out combinations.

    The same (n, seed, size, max_shapes, split, heldout) always gives the same data; a prefix of a larger draw
    is not the smaller draw. Use different seeds for training and evaluation sets.
    """
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    heldout = tuple(tuple(p) for p in heldout)
    a = sample_attributes(n, seed, max_shapes, split, heldout)
    labels = torch.from_numpy(a[:, 0, COLOUR] * len(SHAPES) + a[:, 0, SHAPE])
    return ShapesData(render(a, size, seed), labels, [caption(row) for row in a], torch.from_numpy(a))


def load_shapes_dataset(n: int = 20000, seed: int = 0, size: int = 32, max_shapes: int = MAX_SHAPES,
                        split: str = "all", heldout: tuple[tuple[str, str], ...] = DEFAULT_HELDOUT
                        ) -> tuple[Tensor, Tensor]:
    """(images, labels) for `load_dataset("shapes", ...)`; captions and attributes come from `load_shapes`."""
    data = load_shapes(n, seed, size, max_shapes, split, heldout)
    return data.images, data.labels


# ------------------------------------------------------------------------------------------- measurement


def _measure_component(rgb: np.ndarray, region: np.ndarray, palette: np.ndarray, H: int) -> list[int]:
    """(shape, colour, size, position) of one blob: rgb (H, W, 3) background-subtracted, region (H, W) bool."""
    pixels = rgb[region]                                               # (m, 3)
    weight = np.clip(pixels.max(1), 0.0, None)
    mean = (pixels * weight[:, None]).sum(0) / max(weight.sum(), 1e-6)
    direction = palette / np.linalg.norm(palette, axis=1, keepdims=True)
    colour = int(np.argmax(direction @ mean))                          # coverage scales colour: compare directions
    c = palette[colour]
    cov = np.where(region, rgb @ c / (c @ c), 0.0)                     # (H, W) coverage, unclipped: noise averages out
    area = max(cov.sum(), 1e-6)
    row_sum, col_sum = cov.sum(1), cov.sum(0)                          # (H,), (W,)
    width, height = row_sum.max(), col_sum.max()                       # the widest row, the tallest column
    y = np.arange(H) + 0.5
    centroid = np.array([row_sum @ y, col_sum @ y]) / area
    var = row_sum @ (y - centroid[0]) ** 2 / area
    skew = row_sum @ (y - centroid[0]) ** 3 / area / max(var, 1e-6) ** 1.5
    if skew < TRIANGLE_SKEW / 2:  # an upright triangle's row profile is a ramp; circle and square are symmetric
        shape = SHAPES.index("triangle")
        centroid[0] -= height / 6  # its centroid sits s/3 below its box centre
    else:
        fill = area / max(height * width, 1e-6)
        shape = SHAPES.index("circle") if fill < (FILL_RATIOS[0] + FILL_RATIOS[1]) / 2 else SHAPES.index("square")
    size_threshold = (SIZE_RANGES[0][1] + SIZE_RANGES[1][0]) * H        # largest small box < it < smallest large box
    size = int(max(height, width) > size_threshold)
    position = int(np.argmin(((ANCHORS - centroid / H) ** 2).sum(1)))
    return [shape, colour, size, position]


def measure_attributes(images: Tensor, max_shapes: int = MAX_SHAPES, threshold: float = 0.4) -> Tensor:
    """Attributes read from pixels: (N, max_shapes, 4) int64 (shape, colour, size, position), ordered by position.

    Foreground = pixels whose brightest channel exceeds `threshold` (in [0, 1] units); each connected blob at
    least half the smallest shape's area is one shape, the largest `max_shapes` kept, measured on the image
    minus its mean background. Colour: the palette colour nearest in direction to the blob's mean; size: the
    widest row or tallest column of the blob's coverage against the small/large boundary; shape: a triangle
    if the row profile is skewed like a ramp, else circle or square by area / (widest row * tallest column),
    pi/4 against 1; position: the anchor nearest the centroid (a triangle's moved to its box centre). Rows are
    -1 where fewer shapes are found. Images may be noisy or out of range. Exact on clean renders of 32 pixels
    or more; at 16 pixels a small shape is ~3 pixels wide and its shape reads right ~95% of the time.
    """
    from scipy import ndimage  # imported here: loading the dataset should not pay for scipy

    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()  # (N, H, W, 3)
    N, H = x.shape[:2]
    palette = np.array(list(COLOURS.values()))
    min_area = 0.5 * 2 * (SIZE_RANGES[0][0] * H) ** 2                   # half the smallest triangle
    out = np.full((N, max_shapes, 4), -1, dtype=np.int64)
    for i in range(N):
        fg = x[i].max(2) > threshold
        labels, count = ndimage.label(fg)
        if count == 0:
            continue
        areas = ndimage.sum_labels(fg, labels, index=np.arange(1, count + 1))
        keep = [j + 1 for j in np.argsort(-areas)[:max_shapes] if areas[j] >= min_area]
        regions = [ndimage.binary_dilation(labels == j) for j in keep]
        background = ~ndimage.binary_dilation(fg)
        rgb = x[i] - (x[i][background].mean(0) if background.any() else 0.0)
        found = [_measure_component(rgb, region, palette, H) for region in regions]
        for k, row in enumerate(sorted(found, key=lambda r: r[POSITION])):
            out[i, k] = row
    return torch.from_numpy(out)


def sort_by_position(attributes: Tensor) -> Tensor:
    """Each image's attribute rows by position, absent (-1) rows last: the order `measure_attributes` uses."""
    key = torch.where(attributes[..., POSITION] < 0, len(POSITIONS), attributes[..., POSITION])
    order = key.argsort(dim=1, stable=True)
    return torch.gather(attributes, 1, order[..., None].expand_as(attributes))


def attribute_accuracy(measured: Tensor, target: Tensor) -> dict[str, float]:
    """Per-attribute accuracy over the target's present shapes, the k-th shape in position order against the
    k-th measured one (the order `measure_attributes` returns); "all": every attribute of every shape of an
    image right and no extra shape found. A shape missed before another shifts the pairing: all its errors."""
    target = sort_by_position(target)
    k = min(measured.shape[1], target.shape[1])
    m, t = measured[:, :k], target[:, :k]
    present = t[..., SHAPE] >= 0
    result = {name: (m[..., col] == t[..., col])[present].float().mean().item()
              for col, name in enumerate(("shape", "colour", "size", "position"))}
    extra = (measured[:, k:, SHAPE] >= 0).any(1) if measured.shape[1] > k else torch.zeros(len(t), dtype=torch.bool)
    exact = ((m == t).all(-1) | ~present).all(1) & ((m[..., SHAPE] >= 0) == present).all(1) & ~extra
    result["all"] = exact.float().mean().item()
    return result


def load_shapes_captions(**options: Any) -> list[str]:
    """One caption per item of the "shapes" dataset loaded with the same options (the registry's CAPTIONS entry)."""
    return load_shapes(**options).captions
