"""Turn batches of images in [-1, 1] into uint8 arrays and PNG tiles (a contact sheet) for people to look at."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

Tensor = torch.Tensor

MIN_PNG_WIDTH = 256  # small sheets are upscaled (nearest neighbour) to at least this many pixels wide


def to_uint8_nhwc(images: Tensor | np.ndarray) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8 with u = floor((x + 1) * 127.5 + 0.5), clipped to [0, 255].

    So -1 -> 0, 0 -> 128, 1 -> 255. NaN maps to 0 and infinities to the nearest end, rather than to garbage.
    """
    if isinstance(images, Tensor):
        images = images.detach().cpu().double().numpy()
    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {x.shape}")
    x = np.nan_to_num(x, nan=-1.0, posinf=1.0, neginf=-1.0)
    u = np.clip(np.floor((x + 1.0) * 127.5 + 0.5), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(u.transpose(0, 2, 3, 1))


def image_tiles(images: Tensor | np.ndarray, nrow: int | None = None, padding: int = 2,
               pad_value: int = 255) -> np.ndarray:
    """Tile (N, C, H, W) images in [-1, 1], `nrow` per row (default ceil(sqrt N)), into (H', W', C) uint8.

    C must be 1 or 3. `padding` pixels of `pad_value` separate the tiles and frame the sheet.
    """
    tiles = to_uint8_nhwc(images)
    N, H, W, C = tiles.shape
    if C not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got {C}")
    if N == 0:
        raise ValueError("cannot tile zero images")
    ncol = max(1, min(nrow if nrow is not None else math.ceil(math.sqrt(N)), N))
    nrows = math.ceil(N / ncol)
    sheet = np.full((nrows * (H + padding) + padding, ncol * (W + padding) + padding, C), pad_value, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, ncol)
        top, left = padding + r * (H + padding), padding + c * (W + padding)
        sheet[top:top + H, left:left + W] = tile
    return sheet


def save_image_tiles(images: Tensor | np.ndarray, path: str | os.PathLike, nrow: int | None = None) -> Path:
    """Write image_tiles(images, nrow) as a PNG (grayscale for C = 1, RGB for C = 3), upscaled by an
    integer nearest-neighbour factor to at least MIN_PNG_WIDTH pixels wide. Returns the path."""
    from PIL import Image

    sheet = image_tiles(images, nrow)
    scale = max(1, math.ceil(MIN_PNG_WIDTH / sheet.shape[1]))
    sheet = sheet.repeat(scale, axis=0).repeat(scale, axis=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # uint8 (H, W) is read as mode "L" and (H, W, 3) as "RGB".
    Image.fromarray(sheet[:, :, 0] if sheet.shape[2] == 1 else sheet).save(path, format="PNG")
    return path


def save_image_files(images: Tensor | np.ndarray, folder: str | os.PathLike, prefix: str = "") -> list[Path]:
    """Write each of (N, C, H, W) images in [-1, 1] as its own PNG at its own size, folder/{prefix}{i:05d}.png."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, tile in enumerate(to_uint8_nhwc(images)):
        if tile.shape[2] not in (1, 3):
            raise ValueError(f"images must have 1 or 3 channels, got {tile.shape[2]}")
        paths.append(folder / f"{prefix}{i:05d}.png")
        Image.fromarray(tile[:, :, 0] if tile.shape[2] == 1 else tile).save(paths[-1], format="PNG")
    return paths
