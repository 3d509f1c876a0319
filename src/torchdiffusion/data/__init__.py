"""Offline datasets by name, and helpers that tile images into one PNG.

`load_dataset(name, **kwargs) -> (data, labels)`: images are (N, C, H, W) float32 in [-1, 1], toy
sets (n, 2) float32 with sigma_data = 1; labels are int64 (N,). Nothing is ever downloaded.
The captioned "shapes" set has more than (data, labels): `load_shapes` gives captions and attributes too.
"""

from __future__ import annotations

import torch

from ..registry import CAPTIONS, DATASETS
from .tiles import image_tiles, save_image_files, save_image_tiles, to_uint8_nhwc
from .image_files import image_tensor, mask_tensor, read_image, read_mask, to_pil, write_image
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
from . import kjv
from .quantized import IMAGE_SHAPES as IMAGE_TOKEN_SETS
from .quantized import levels_to_images

Tensor = torch.Tensor
TOY_PREFIX = "toy:"


def load_captions(name: str, **kwargs) -> list[str]:
    """The captions of dataset `name` (same kwargs as load_dataset); ValueError if it has none."""
    if name not in CAPTIONS:
        raise ValueError(f"dataset {name!r} has no captions for text conditioning; captioned datasets: "
                         f"{', '.join(CAPTIONS)}")
    return CAPTIONS[name](**kwargs)


def decode_tokens(name: str, ids: Tensor) -> str:
    """A token sequence (L,) of dataset `name` as text (its characters; ids separated by spaces for other sets)."""
    if name == "kjv":
        return kjv.decode(ids)
    return " ".join(str(i) for i in torch.as_tensor(ids).tolist())


def token_images(name: str, ids: Tensor, levels: int) -> Tensor:
    """Token samples (N, C * H * W) of an image token set (IMAGE_TOKEN_SETS) as (N, C, H, W) images in [-1, 1]."""
    if name not in IMAGE_TOKEN_SETS:
        raise ValueError(f"dataset {name!r} is not an image token set ({', '.join(IMAGE_TOKEN_SETS)})")
    return levels_to_images(ids, levels, IMAGE_TOKEN_SETS[name])


def encode_text(name: str, text: str) -> Tensor:
    """Text -> (len,) ids in dataset `name`'s vocabulary (ValueError for a set without one or a foreign character)."""
    if name == "kjv":
        return kjv.encode(text)
    raise ValueError(f"dataset {name!r} has no text vocabulary; a text prefix needs a text dataset (kjv)")


def load_dataset(name: str, **kwargs) -> tuple[Tensor, Tensor]:
    """(data, labels) of the registered dataset `name`; kwargs go to its loader (toys: n, seed).

    A dataset without items is a ValueError: a loop drawing batches from it would never get one.
    """
    data, labels = DATASETS.lookup(name)(**kwargs)
    if len(data) == 0:
        options = f" with options {kwargs}" if kwargs else ""
        raise ValueError(f"dataset {name!r}{options} has no items; nothing can be trained or evaluated on it")
    if len(labels) != len(data):
        raise ValueError(f"dataset {name!r} gave {len(data)} items but {len(labels)} labels")
    return data, labels


__all__ = [
    "CAPTIONS",
    "IMAGE_TOKEN_SETS",
    "DATASETS",
    "TOY2D",
    "ShapesData",
    "DatasetNotFoundError",
    "IDXFormatError",
    "decode_tokens",
    "encode_text",
    "token_images",
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
    "read_image",
    "read_mask",
    "save_image_files",
    "save_image_tiles",
    "to_uint8_nhwc",
    "write_image",
]
