"""Images as token sequences: Fashion-MNIST quantised to a few grey levels, for discrete diffusion on images.

A uint8 pixel v becomes the class floor(v K / 256) of K equal-width grey levels, and a 28 x 28 image the sequence
(784,) of its classes in raster order: the data of D3PM's ordinal kernels (Austin et al. 2021, sec. 5 quantise
CIFAR-10's 256 levels the same way; a few levels keep the CPU cost small). `levels_to_images` maps classes back to
[-1, 1] (class k -> 2 k / (K - 1) - 1) for PNG tiles.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from .images import FASHION_MNIST_FILES, IDXFormatError, fashion_mnist_dir, read_idx

Tensor = torch.Tensor

IMAGE_SHAPES = {"fashion_mnist_levels": (1, 28, 28)}  # token datasets that are images: their (C, H, W)


def quantise(pixels: np.ndarray, levels: int) -> Tensor:
    """uint8 pixels -> long classes floor(v K / 256) in [0, K)."""
    return torch.from_numpy(pixels.astype(np.int64) * levels // 256)


def load_fashion_mnist_levels(split: str = "train", levels: int = 8, limit: int | None = None,
                              root: str | os.PathLike | None = None) -> tuple[Tensor, Tensor]:
    """(ids (N, 784) long in [0, levels), labels (N,)): Fashion-MNIST's train (60000) or test (10000) split, each
    pixel quantised to `levels` grey levels, raster order."""
    if split not in FASHION_MNIST_FILES:
        raise ValueError(f"split must be one of {sorted(FASHION_MNIST_FILES)}, got {split!r}")
    if not isinstance(levels, int) or not 2 <= levels <= 256:
        raise ValueError(f"data.options.levels must be a whole number in [2, 256], got {levels!r}")
    d = fashion_mnist_dir(root)
    image_file, label_file = (d / name for name in FASHION_MNIST_FILES[split])
    images, labels = read_idx(image_file, limit), read_idx(label_file, limit)
    if images.ndim != 3 or images.dtype != np.uint8 or len(labels) != len(images):
        raise IDXFormatError(f"{image_file}: expected uint8 images (N, H, W) and as many labels, got "
                             f"{images.dtype} {images.shape} and {labels.shape}")
    ids = quantise(images.reshape(len(images), -1), levels)
    return ids, torch.from_numpy(labels.astype(np.int64))


def levels_to_images(ids: Tensor, levels: int, shape: tuple[int, int, int]) -> Tensor:
    """(N, C * H * W) classes in [0, K) -> (N, C, H, W) float32 images in [-1, 1] (class k -> 2 k / (K - 1) - 1)."""
    return (2.0 * ids.float() / (levels - 1) - 1.0).view(len(ids), *shape)
