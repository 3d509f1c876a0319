"""Editing over the samplers: SDEdit (noise to a strength, then any sampler), DDIM inversion (DDIM's deterministic
step run up an increasing grid) and interpolation by spherical interpolation of inverted noises."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..denoiser import describe, sigma_batch
from ..sampling import grids, sample
from ..sampling.common import Generators, noise_like

Tensor = torch.Tensor


def strength_sigma(strength: float, sigma_min: float, sigma_max: float, rho: float = 7.0) -> float:
    """The noise level at `strength` in [0, 1]: 0 at strength 0, else the point a fraction `strength` of the way
    from sigma_min to sigma_max along Karras et al.'s ramp (2022, eq. 5), so strength 1 is sigma_max and a strength
    is the fraction of a default sampling run that is redone."""
    if not 0 <= strength <= 1:
        raise ValueError(f"strength must lie in [0, 1], got {strength}")
    if strength == 0:
        return 0.0
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (lo + strength * (hi - lo)) ** rho


def sdedit(denoiser: Any, x0: Tensor, strength: float, *, method: str = "ddim", nfe: int = 50,
           sigma_min: float | None = None, sigma_max: float | None = None, generator: Generators = None,
           **options: Any) -> Tensor:
    """SDEdit (Meng et al. 2022, Alg. 1, VE-SDE form): x = x0 + sigma z at sigma = strength_sigma(strength), then
    `sample` with any method (deterministic or stochastic) from sigma down to 0 in at most nfe calls. Strength 0
    returns x0; strength 1 starts from x0 + sigma_max z, sampling from noise up to x0 / sigma_max."""
    info = describe(denoiser)
    s_min = info.sigma_min if sigma_min is None else float(sigma_min)
    s_max = info.sigma_max if sigma_max is None else float(sigma_max)
    s = strength_sigma(strength, s_min, s_max)
    if s == 0:
        return x0.clone()
    x = x0 + s * noise_like(x0, generator)
    return sample(denoiser, x, method=method, nfe=nfe, sigma_min=s_min, sigma_max=s, generator=generator, **options)


@dataclass(frozen=True)
class Inversion:
    """DDIM inversion's result: the noise at sigma_max, the reconstruction from it, and the per-sample RMS error of
    the reconstruction (B,)."""

    noise: Tensor
    reconstruction: Tensor
    error: Tensor


def inversion_levels(denoiser: Any, nfe: int, sigma_min: float | None, sigma_max: float | None) -> Tensor:
    """The nfe + 1 decreasing Karras levels from sigma_max to sigma_min (no final 0) inversion runs up."""
    if nfe < 1:
        raise ValueError(f"nfe must be >= 1, got {nfe}")
    info = describe(denoiser)
    s_min = info.sigma_min if sigma_min is None else float(sigma_min)
    s_max = info.sigma_max if sigma_max is None else float(sigma_max)
    return grids.karras(nfe + 1, s_min, s_max)[:-1]


@torch.no_grad()
def ddim_invert(denoiser: Any, x0: Tensor, *, nfe: int = 50, sigma_min: float | None = None,
                sigma_max: float | None = None, reconstruct: bool = True) -> Inversion:
    """DDIM inversion (Song, Meng & Ermon 2021, Sec. 4.3; Dhariwal & Nichol 2021, App. F): x0 taken as the state at
    sigma_min, then DDIM's step x' = D + (s' / s)(x - D) (Euler on the probability-flow ODE in these coordinates) up
    the increasing grid to sigma_max, nfe calls; with `reconstruct`, DDIM from that noise back down the same grid to
    0 (nfe + 1 calls). The error falls at DDIM's order 1 as nfe grows."""
    levels = inversion_levels(denoiser, nfe, sigma_min, sigma_max).flip(0).tolist()  # increasing
    x = x0
    for s, s_up in zip(levels[:-1], levels[1:]):
        d = denoiser(x, sigma_batch(s, x))
        x = torch.lerp(d, x, s_up / s)
    if not reconstruct:
        return Inversion(x, x0, torch.full((len(x0),), math.nan, dtype=x0.dtype))
    rec = decode(denoiser, x, nfe=nfe, sigma_min=sigma_min, sigma_max=sigma_max)
    return Inversion(x, rec, (rec - x0).reshape(len(x0), -1).pow(2).mean(1).sqrt())


def decode(denoiser: Any, noise: Tensor, *, nfe: int = 50, sigma_min: float | None = None,
           sigma_max: float | None = None) -> Tensor:
    """DDIM from inverted noise down the inversion's own levels, then to 0 (nfe + 1 calls)."""
    levels = inversion_levels(denoiser, nfe, sigma_min, sigma_max)
    return sample(denoiser, noise, method="ddim", grid=grids.append_zero(levels))


def slerp(a: Tensor, b: Tensor, t: float) -> Tensor:
    """Spherical interpolation per row, sin((1 - t) theta) / sin theta a + sin(t theta) / sin theta b, theta the
    angle between the rows (Shoemake 1985; linear where they are parallel)."""
    fa, fb = a.reshape(len(a), -1), b.reshape(len(b), -1)
    cos = (fa * fb).sum(1) / (fa.norm(dim=1) * fb.norm(dim=1)).clamp_min(1e-30)
    theta = torch.arccos(cos.clamp(-1, 1))[:, None]
    small = theta < 1e-6
    sin = torch.where(small, 1, torch.sin(theta))
    wa = torch.where(small, 1 - t, torch.sin((1 - t) * theta) / sin)
    wb = torch.where(small, t, torch.sin(t * theta) / sin)
    return (wa * fa + wb * fb).reshape(a.shape)


@torch.no_grad()
def interpolate(denoiser: Any, x_a: Tensor, x_b: Tensor, ts: Sequence[float], *, nfe: int = 50,
                sigma_min: float | None = None, sigma_max: float | None = None) -> Tensor:
    """Interpolation between two samples (Song, Meng & Ermon 2021, Sec. 5.3): DDIM-invert both (1, ...) rows, slerp
    their noises at each t in ts, decode each; returns (len(ts), ...)."""
    both = ddim_invert(denoiser, torch.cat([x_a, x_b]), nfe=nfe, sigma_min=sigma_min, sigma_max=sigma_max,
                       reconstruct=False).noise
    z = torch.cat([slerp(both[:1], both[1:], float(t)) for t in ts])
    return decode(denoiser, z, nfe=nfe, sigma_min=sigma_min, sigma_max=sigma_max)
