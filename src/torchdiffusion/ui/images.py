"""The page's pictures <-> the library's tensors: uploads to (1, C, H, W) in [-1, 1] at the model's size (through
data/image_files.py, as the CLI reads files), painted layers to an inpainting mask."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from ..data import image_tensor, mask_tensor, to_pil  # noqa: F401  (to_pil: the page's one image writer)
from . import limits

Tensor = torch.Tensor


def as_pil(image: Any, name: str) -> Image.Image:
    """A numpy array (H, W[, C]) or PIL image from the page, its size checked."""
    if image is None:
        raise ValueError(f"{name}: upload an image first")
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3) or image.size == 0:
            raise ValueError(f"{name}: expected an (H, W) or (H, W, C) image, got shape {image.shape}")
        image = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    if not isinstance(image, Image.Image):
        raise ValueError(f"{name}: expected an image, got {type(image).__name__}")
    limits.image_size(name, *image.size)
    return image


def from_image(image: Any, shape: tuple[int, ...], name: str = "the image") -> Tensor:
    """An uploaded image resized (bicubic, as the CLI's --resize) to the model's (C, H, W) -> (1, C, H, W) in [-1, 1]."""
    c, h, w = shape
    if c not in (1, 3):
        raise ValueError(f"the model's images have {c} channels; the page edits 1- or 3-channel images only")
    img = as_pil(image, name)
    if img.mode in ("RGBA", "LA", "P"):  # transparent pixels over white, as a viewer shows them
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return image_tensor(img, shape, resize=True)[None]


def mask_from_paint(layers: list[Any], shape: tuple[int, ...]) -> Tensor:
    """Inpainting mask (C, H, W) of the model's shape from painted layers: 0 (missing, to fill in) wherever any
    layer is painted (alpha > 0, or nonzero without alpha) at the nearest pixel, 1 (observed) elsewhere."""
    c, h, w = shape
    painted = np.zeros((h, w), dtype=bool)
    for layer in layers or []:
        if layer is None:
            continue
        img = as_pil(layer, "the painted mask")
        a = np.asarray(img.convert("RGBA"))[..., 3] if img.mode in ("RGBA", "LA", "P") else \
            np.asarray(img.convert("L"))
        small = Image.fromarray(((a > 0) * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BOX)
        painted |= np.asarray(small) > 0  # a model pixel touched by any paint is missing
    return torch.from_numpy(~painted).to(torch.float32)[None].expand(c, h, w).clone()


def mask_from_upload(image: Any, shape: tuple[int, ...]) -> Tensor:
    """Inpainting mask (C, H, W) from an uploaded mask picture, read as the CLI reads mask files: white (>= 128) is
    observed (kept), black missing (filled in)."""
    return mask_tensor(as_pil(image, "the mask image"), shape, resize=True)
