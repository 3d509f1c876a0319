"""Super-resolution by a conditional model (SR3, Saharia et al. 2021) and cascades (Ho et al. 2021, "Cascaded
Diffusion Models"): the model's backbone takes `low_res` (the low-resolution image, resized to its size and
concatenated to x) and `aug_level` (the std of the Gaussian noise low_res was corrupted by, "noise conditioning
augmentation", sec. 3.2), so it is an ordinary Denoiser `D(x, sigma, low_res=..., aug_level=...)` that every sampler
runs once the condition is bound.

The low-resolution image of x0 is the `Downsample` measurement (average pooling), the same `y` that `solve` with
`Downsample(factor)` inverts, so the two routes to super-resolution answer the same question.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..generate import check_shape, generate
from .operators import Downsample

Tensor = torch.Tensor
# aug noise of sample i comes from its own generator, seeded apart from the start noise's seed + i stream
AUG_SEED_OFFSET = 0x9E3779B97F4A7C15


def low_res_size(model: Any) -> int:
    """The side of the low-resolution input a super-resolution model takes (its backbone's low_res_size), or a
    ValueError when the model is not one."""
    size = int(getattr(getattr(getattr(model, "backbone", None), "config", None), "low_res_size", 0) or 0)
    if size < 1:
        raise ValueError("not a super-resolution model: its backbone takes no low_res (train one from a config "
                         "with model.params.low_res_size, e.g. fashion_mnist_sr7)")
    return size


def downsample_to(x: Tensor, size: int) -> Tensor:
    """x (B, C, H, W) average-pooled to (B, C, size, size); H and W must be the same multiple of size."""
    if x.ndim != 4 or x.shape[-1] != x.shape[-2] or x.shape[-1] % size:
        raise ValueError(f"cannot average-pool images of shape {tuple(x.shape)} to {size}x{size}: they must be "
                         f"(B, C, H, H) with H a multiple of {size}")
    return x if x.shape[-1] == size else Downsample(x.shape[-1] // size)(x)


def augment(low_res: Tensor, aug_level: Tensor, noise: Tensor) -> Tensor:
    """low_res + s n with s = aug_level (B,) per sample: CDM's Gaussian conditioning augmentation (Ho et al. 2021,
    sec. 3.2), in VE form."""
    return low_res + aug_level.to(low_res).view(-1, *[1] * (low_res.ndim - 1)) * noise


def training_condition(x0: Tensor, size: int, aug_sigma_max: float, generator: torch.Generator) -> dict[str, Tensor]:
    """The super-resolution condition of a training batch x0 (B, C, H, W): low_res = x0 average-pooled to size, plus
    Gaussian noise of std s ~ U[0, aug_sigma_max] per sample, and aug_level = s (B,). Drawn on the CPU from
    `generator` for the whole batch (every rank of a distributed run draws the same)."""
    low = downsample_to(x0.float(), size)
    s = torch.rand(x0.shape[0], generator=generator) * aug_sigma_max
    n = torch.randn(low.shape, generator=generator)
    return {"low_res": augment(low, s, n), "aug_level": s}


def sampling_condition(low_res: Tensor, aug_sigma: float, seed: int) -> dict[str, Tensor]:
    """The condition for upscaling low_res (N, C, s, s) at noise-augmentation level aug_sigma: sample i's noise on
    its low_res from its own generator (seeded from seed + i), so a sample does not depend on its batch."""
    if not 0 <= aug_sigma < float("inf"):
        raise ValueError(f"aug_sigma must be a finite number >= 0, got {aug_sigma}")
    level = torch.full((low_res.shape[0],), float(aug_sigma))
    if aug_sigma == 0:
        return {"low_res": low_res, "aug_level": level}
    noise = torch.stack([torch.randn(low_res.shape[1:], dtype=low_res.dtype,
                                     generator=torch.Generator().manual_seed((seed + i + AUG_SEED_OFFSET) % 2**64))
                         for i in range(low_res.shape[0])])
    return {"low_res": augment(low_res, level, noise), "aug_level": level}


@torch.no_grad()
def upscale(model: Any, low_res: Tensor, *, sampler: str = "ipndm", steps: int = 20, nfe: int | None = None,
            aug_sigma: float = 0.0, seed: int = 0, batch_size: int = 256, progress: bool = False,
            **options: Any) -> Tensor:
    """Super-resolve low_res (N, C, s, s) with a super-resolution model (SR3, Saharia et al. 2021, sec. 2): any
    sampler of `generate`, sample i seeded seed + i, low_res first corrupted at aug_sigma (the level the model is
    told; Ho et al. 2021, sec. 3.2). Returns (N, C, H, W) at the model's resolution, on the CPU."""
    size = low_res_size(model)
    shape = tuple(int(d) for d in model.backbone.config.data_shape)
    if not isinstance(low_res, Tensor) or low_res.ndim != 4 or tuple(low_res.shape[1:]) != (shape[0], size, size):
        got = tuple(low_res.shape) if isinstance(low_res, Tensor) else type(low_res).__name__
        raise ValueError(f"low_res must have shape (N, {shape[0]}, {size}, {size}) for this model, got {got}")
    check_shape(shape, low_res.shape[0])
    if not bool(torch.isfinite(low_res).all()):
        raise ValueError("low_res has NaN or infinite values")
    cond = sampling_condition(low_res.float().cpu(), aug_sigma, seed)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    cond = {k: v.to(device) for k, v in cond.items()}
    x, _ = generate(model, shape, low_res.shape[0], sampler=sampler, steps=steps, nfe=nfe, seed=seed,
                    batch_size=batch_size, progress=progress, cond=cond, **options)
    return x


@dataclass(frozen=True)
class Cascade:
    """A cascade's stages: the base model's samples, their low-resolution inputs to the SR model (before
    augmentation) and the SR model's outputs."""

    base: Tensor
    low_res: Tensor
    samples: Tensor


@torch.no_grad()
def cascade(base: Any, sr: Any, num: int, *, base_sampler: str = "ipndm", base_steps: int = 20,
            sr_sampler: str = "ipndm", sr_steps: int = 20, aug_sigma: float = 0.0, seed: int = 0,
            base_cond: dict[str, Tensor] | None = None, batch_size: int = 256, progress: bool = False) -> Cascade:
    """A cascaded diffusion model (Ho et al. 2021, sec. 3): num samples of the base model, average-pooled to the SR
    model's low_res_size, noised at aug_sigma (the level the SR model is told), then super-resolved. Base sample i
    is seeded seed + i and its super-resolution seed + num + i, so the two stages never share a noise stream."""
    size = low_res_size(sr)
    shape = tuple(int(d) for d in base.backbone.config.data_shape)
    sr_channels = int(sr.backbone.config.in_channels)
    if shape[0] != sr_channels:
        raise ValueError(f"the base model makes {shape[0]}-channel images but the SR model takes {sr_channels}")
    x, _ = generate(base, shape, num, sampler=base_sampler, steps=base_steps, seed=seed, cond=base_cond,
                    batch_size=batch_size, progress=progress)
    low = downsample_to(x.clamp(-1, 1), size)
    out = upscale(sr, low, sampler=sr_sampler, steps=sr_steps, aug_sigma=aug_sigma, seed=seed + num,
                  batch_size=batch_size, progress=progress)
    return Cascade(x, low, out)
