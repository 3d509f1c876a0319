"""Operators and masks by name, for people and command lines: `mask_preset("centre", shape)` and
`operator_from_spec("blur:2", shape)`."""

from __future__ import annotations

import math

import torch

from .operators import Blur, Downsample, Mask, Operator, gaussian_kernel, motion_kernel

Tensor = torch.Tensor

# what each preset leaves MISSING (0); the rest is observed (1)
MASK_PRESETS = {
    "centre": "the centre square of half the side (the box of DPS's inpainting, Chung et al. 2023)",
    "half": "the right half (a half mask as in RePaint, Lugmayr et al. 2022)",
    "left": "the left half", "right": "the right half", "top": "the top half", "bottom": "the bottom half",
    "lines": "every other row (RePaint's 'alternating lines')",
    "expand": "everything but the centre square of half the side (RePaint's 'expand')",
}
OPERATORS = {
    "blur:STD[:SIZE]": "Gaussian blur of std STD pixels (kernel SIZE, default the odd size >= 6 STD + 1)",
    "motion:SIZE[:ANGLE]": "linear motion blur SIZE pixels long (odd) at ANGLE degrees (default 0: horizontal)",
    "downsample:F": "F x F average pooling (super-resolution by F)",
    "mask:PRESET": f"inpainting with a preset mask ({', '.join(MASK_PRESETS)})",
    "denoise": "the identity (denoising: only --noise-std corrupts)",
}


def mask_preset(name: str, shape: tuple[int, ...]) -> Tensor:
    """A (*shape) float32 mask of 1 (observed) and 0 (missing) over the last two dims (..., H, W) (MASK_PRESETS)."""
    if name == "center":
        name = "centre"
    if name not in MASK_PRESETS:
        raise ValueError(f"unknown mask preset {name!r}; choose one of {', '.join(MASK_PRESETS)}")
    if len(shape) < 2:
        raise ValueError(f"mask presets need image samples (..., H, W), got shape {tuple(shape)}")
    H, W = shape[-2:]
    m = torch.ones(H, W)
    top, left, h, w = H // 4, W // 4, H - 2 * (H // 4), W - 2 * (W // 4)  # the centre box, half the side
    if name in ("centre", "expand"):
        m[top:top + h, left:left + w] = 0
        if name == "expand":
            m = 1 - m
    elif name in ("half", "right"):
        m[:, W // 2:] = 0
    elif name == "left":
        m[:, :W - W // 2] = 0
    elif name == "top":
        m[:H - H // 2] = 0
    elif name == "bottom":
        m[H // 2:] = 0
    else:  # lines
        m[1::2] = 0
    return m.expand(*shape).contiguous()


def _numbers(spec: str, args: list[str], count: tuple[int, int], what: str) -> list[float]:
    if not count[0] <= len(args) <= count[1]:
        raise ValueError(f"operator {spec!r}: {what}")
    try:
        values = [float(a) for a in args]
    except ValueError:
        raise ValueError(f"operator {spec!r}: {what} (numbers)") from None
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"operator {spec!r}: the numbers must be finite")
    return values


def _odd_size(value: float, spec: str) -> int:
    if value != int(value) or int(value) < 1 or int(value) % 2 == 0:
        raise ValueError(f"operator {spec!r}: a kernel size is an odd whole number >= 1, got {value:g}")
    return int(value)


def operator_from_spec(spec: str, shape: tuple[int, ...]) -> Operator:
    """The operator a spec names (OPERATORS: 'blur:2', 'motion:9:45', 'downsample:4', 'mask:centre', 'denoise')
    for samples of `shape`, checked against it."""
    kind, *args = spec.strip().split(":")
    if kind == "blur":
        values = _numbers(spec, args, (1, 2), "give blur:STD or blur:STD:SIZE")
        if values[0] <= 0:
            raise ValueError(f"operator {spec!r}: the blur std must be > 0")
        size = _odd_size(values[1], spec) if len(values) > 1 else 2 * math.ceil(3 * values[0]) + 1
        return Blur(gaussian_kernel(size, values[0]))
    if kind == "motion":
        values = _numbers(spec, args, (1, 2), "give motion:SIZE or motion:SIZE:ANGLE")
        size = _odd_size(values[0], spec)
        if size < 3:
            raise ValueError(f"operator {spec!r}: a motion kernel is at least 3 pixels long")
        return Blur(motion_kernel(size, values[1] if len(values) > 1 else 0.0))
    if kind == "downsample":
        (f,) = _numbers(spec, args, (1, 1), "give downsample:F")
        if f != int(f) or f < 1:
            raise ValueError(f"operator {spec!r}: the factor is a whole number >= 1")
        if len(shape) < 2 or shape[-1] % int(f) or shape[-2] % int(f):
            raise ValueError(f"operator {spec!r}: the image size {tuple(shape[-2:])} is not a multiple of {int(f)}")
        return Downsample(int(f))
    if kind == "mask":
        if len(args) != 1:
            raise ValueError(f"operator {spec!r}: give mask:PRESET ({', '.join(MASK_PRESETS)})")
        return Mask(mask_preset(args[0], shape))
    if kind == "denoise" and not args:
        return Mask(torch.ones(shape))
    raise ValueError(f"unknown operator {spec!r}; give one of: " + "; ".join(f"{k} ({v})" for k, v in OPERATORS.items()))
