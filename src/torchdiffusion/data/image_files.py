"""PNG (or any Pillow-readable) image files in and out, scaled as the datasets are: 8-bit u -> u * 2 / 255 - 1 in
[-1, 1] on reading, and `to_uint8_nhwc`'s rounding on writing, so a written image reads back exactly."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .tiles import to_uint8_nhwc

Tensor = torch.Tensor
MASK_THRESHOLD = 128  # a mask pixel >= this (white) is observed / kept, below it (black) missing


def _open(path: str | os.PathLike, what: str):
    """The Pillow image at path, fully read, or a ValueError saying why not."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.exists():
        raise ValueError(f"{what} {p} does not exist")
    if p.is_dir():
        raise ValueError(f"{what} {p} is a directory, not an image file")
    try:
        img = Image.open(p)
        img.load()
    except UnidentifiedImageError:
        raise ValueError(f"{what} {p} is not an image file Pillow can read (give a PNG)") from None
    except (OSError, SyntaxError) as e:  # truncated or corrupt data
        raise ValueError(f"{what} {p} could not be decoded ({e})") from None
    return img


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of the image file at path, or a ValueError saying why it cannot be read."""
    w, h = _open(path, "image").size
    return h, w


def _fit(img, size: tuple[int, int], resize: bool, what: str, path: str | os.PathLike, resample: int):
    """img at size (H, W): resized when asked, else a ValueError naming both sizes."""
    H, W = size
    if img.size == (W, H):
        return img
    if not resize:
        raise ValueError(f"{what} {path} is {img.size[1]}x{img.size[0]} (HxW) but the model takes {H}x{W} images; "
                         f"resize it first, or ask for resizing (resize=True, the CLI's --resize)")
    return img.resize((W, H), resample)


def image_tensor(img, shape: tuple[int, ...], *, resize: bool = False, where: str = "the image") -> Tensor:
    """A Pillow image as a (C, H, W) float32 tensor in [-1, 1] for samples of shape (C, H, W), C = 1 or 3: converted
    to grayscale (luminance) or RGB (grey replicated), alpha dropped, resized bicubically when `resize`."""
    from PIL import Image

    C, H, W = check_image_shape(shape)
    img = _fit(img, (H, W), resize, "image", where, Image.Resampling.BICUBIC)
    arr = np.asarray(img.convert("L" if C == 1 else "RGB"), dtype=np.float32)  # (H, W) or (H, W, 3), 0..255
    arr = arr[None] if C == 1 else arr.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(arr)).mul_(2.0 / 255.0).sub_(1.0)


def mask_tensor(img, shape: tuple[int, ...], *, resize: bool = False, where: str = "the mask") -> Tensor:
    """A Pillow mask image as a (C, H, W) float32 tensor of 1 (observed: white, grey >= MASK_THRESHOLD) and 0
    (missing: black), its grey levels (luminance) shared by every channel; resized by nearest neighbour."""
    from PIL import Image

    C, H, W = check_image_shape(shape)
    img = _fit(img, (H, W), resize, "mask", where, Image.Resampling.NEAREST)
    grey = np.asarray(img.convert("L"))
    keep = torch.from_numpy((grey >= MASK_THRESHOLD).astype(np.float32))
    return keep.expand(C, H, W).contiguous()


def read_image(path: str | os.PathLike, shape: tuple[int, ...], *, resize: bool = False) -> Tensor:
    """The image file at path as `image_tensor` makes it: (C, H, W) in [-1, 1]."""
    check_image_shape(shape)
    return image_tensor(_open(path, "image"), shape, resize=resize, where=str(path))


def read_mask(path: str | os.PathLike, shape: tuple[int, ...], *, resize: bool = False) -> Tensor:
    """The mask file at path as `mask_tensor` makes it: (C, H, W), 1 = observed (white), 0 = missing (black)."""
    check_image_shape(shape)
    return mask_tensor(_open(path, "mask"), shape, resize=resize, where=str(path))


def to_pil(x: Tensor):
    """One (C, H, W) image in [-1, 1] (C = 1 or 3) as a grayscale or RGB Pillow image."""
    from PIL import Image

    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"an image to write is (C, H, W) with C = 1 or 3, got shape {tuple(x.shape)}")
    u = to_uint8_nhwc(x[None])[0]  # (H, W, C)
    return Image.fromarray(u[:, :, 0] if u.shape[2] == 1 else u)


def write_image(x: Tensor, path: str | os.PathLike) -> Path:
    """Write one (C, H, W) image in [-1, 1] (C = 1 or 3) as a PNG of exactly H x W pixels. Returns the path."""
    img = to_pil(x)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG")
    return path


def check_image_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) of an image model's sample shape, or a ValueError for other data (2-D points, 3-channel+ data)."""
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise ValueError(f"images in and out need a model of images (C, H, W) with C = 1 or 3; this model's samples "
                         f"have shape {tuple(shape)}")
    return int(shape[0]), int(shape[1]), int(shape[2])
