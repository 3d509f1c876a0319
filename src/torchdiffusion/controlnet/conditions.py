"""Control images derived from images: the mask of the shapes, or a Sobel edge map (Zhang et al. 2023, sec. 4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

Tensor = torch.Tensor

MASK_THRESHOLD = -0.6  # a pixel whose brightest channel is above this (in [-1, 1]) belongs to a shape (black canvas)


def shape_mask(images: Tensor) -> Tensor:
    """images (B, C, H, W) in [-1, 1] on a black background -> (B, 1, H, W) in {-1, 1}: 1 on the shapes."""
    return torch.where(images.amax(dim=1, keepdim=True) > MASK_THRESHOLD, 1.0, -1.0).to(images.dtype)


def sobel_edges(images: Tensor) -> Tensor:
    """The Sobel gradient magnitude of the mean channel (Sobel & Feldman 1968), scaled to [-1, 1] per image."""
    gray = images.mean(dim=1, keepdim=True)
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=images.dtype)
    k = torch.stack([kx, kx.T])[:, None]  # (2, 1, 3, 3): d/dx, d/dy
    g = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), k.to(images.device))  # (B, 2, H, W)
    mag = g.square().sum(dim=1, keepdim=True).sqrt()
    peak = mag.flatten(1).amax(dim=1).clamp_min(1e-8)[:, None, None, None]
    return 2 * mag / peak - 1


CONTROL_KINDS = {"mask": shape_mask, "edges": sobel_edges}


def control_image(images: Tensor, kind: str) -> Tensor:
    """The control image of kind `mask` or `edges` for each image: (B, 1, H, W) in [-1, 1]."""
    if kind not in CONTROL_KINDS:
        raise ValueError(f"control kind {kind!r} is not one of {', '.join(CONTROL_KINDS)}")
    return CONTROL_KINDS[kind](images)


def read_control_png(path: str | Path, size: tuple[int, int]) -> Tensor:
    """A grayscale control image (1, 1, H, W) in [-1, 1] from a PNG of exactly `size` (H, W); ValueError otherwise."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--control: no such file {path}")
    try:
        with Image.open(path) as im:
            array = np.asarray(im.convert("L"), dtype=np.float32)
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"--control {path}: not a readable image ({e})") from None
    if array.shape != tuple(size):
        raise ValueError(f"--control {path} is {array.shape[1]}x{array.shape[0]} pixels, but the model makes "
                         f"{size[1]}x{size[0]} images; give a control image of that size")
    return torch.from_numpy(array / 127.5 - 1.0)[None, None]
