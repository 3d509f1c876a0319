"""Offline datasets by name, and helpers that tile images into one PNG.

`load_dataset(name, **kwargs) -> (data, labels)`: images are (N, C, H, W) float32 in [-1, 1], toy
sets (n, 2) float32 with sigma_data = 1; labels are int64 (N,). Nothing is ever downloaded.
The captioned "shapes" set has more than (data, labels): `load_shapes` gives captions and attributes too.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch

from .tiles import image_tiles, save_image_tiles, to_uint8_nhwc
from .images import (
    DatasetNotFoundError,
    IDXFormatError,
    fashion_mnist_dir,
    load_digits,
    load_fashion_mnist,
    load_lfw_faces,
    load_mnist,
    load_textures,
    read_idx,
)
from .shapes import ShapesData, load_shapes, load_shapes_dataset, measure_attributes
from .toy2d import TOY2D

Tensor = torch.Tensor
TOY_PREFIX = "toy:"


def _load_toy(name: str, n: int = 20000, seed: int = 0) -> tuple[Tensor, Tensor]:
    """n points of TOY2D[name] from a generator seeded with `seed`, all labelled 0."""
    generator = torch.Generator().manual_seed(seed)
    return TOY2D[name](n, generator=generator), torch.zeros(n, dtype=torch.int64)


DATASETS: dict[str, Callable[..., tuple[Tensor, Tensor]]] = {
    "mnist": load_mnist,
    "fashion_mnist": load_fashion_mnist,
    "digits": load_digits,
    "textures": load_textures,
    "lfw": load_lfw_faces,
    "shapes": load_shapes_dataset,
    **{TOY_PREFIX + name: partial(_load_toy, name) for name in TOY2D},
}


# datasets with a caption per item, for text conditioning: name -> loader(**options) -> list[str]
CAPTIONS: dict[str, Callable[..., list[str]]] = {
    "shapes": lambda **kw: load_shapes(**kw).captions,
}


def load_captions(name: str, **kwargs) -> list[str]:
    """The captions of dataset `name` (same kwargs as load_dataset); ValueError if it has none."""
    if name not in CAPTIONS:
        raise ValueError(f"dataset {name!r} has no captions for text conditioning; captioned datasets: "
                         f"{', '.join(CAPTIONS)}")
    return CAPTIONS[name](**kwargs)


def load_dataset(name: str, **kwargs) -> tuple[Tensor, Tensor]:
    """(data, labels) of the registered dataset `name`; kwargs go to its loader (toys: n, seed)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name](**kwargs)


__all__ = [
    "CAPTIONS",
    "DATASETS",
    "TOY2D",
    "ShapesData",
    "DatasetNotFoundError",
    "IDXFormatError",
    "fashion_mnist_dir",
    "image_tiles",
    "load_captions",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_lfw_faces",
    "load_mnist",
    "load_shapes",
    "load_shapes_dataset",
    "load_textures",
    "measure_attributes",
    "read_idx",
    "save_image_tiles",
    "to_uint8_nhwc",
]
