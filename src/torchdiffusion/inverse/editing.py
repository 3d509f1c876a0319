"""Editing over the samplers: SDEdit (noise to a strength, then any sampler), inversion (DDIM's or Heun's
deterministic step run up an increasing grid) and interpolation by spherical interpolation of inverted noises."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..denoiser import describe, sigma_batch
from ..sampling import grids, sample
from ..sampling.common import MAX_STEP_RATIO, Generators, first_order, noise_like

Tensor = torch.Tensor
TOP_GAP = 10.0  # a discrete table's top level this far above the next is left out of editing's sigma range


def sigma_range(denoiser: Any, sigma_min: float | None, sigma_max: float | None) -> tuple[float, float]:
    """(sigma_min, sigma_max) for editing: the given ones, else the denoiser's (`describe`), sigma_max lowered below
    a discrete table's top level when that is more than TOP_GAP times the next (cosine's 20291 over 642): the level
    below is noise already, and a step across the gap multiplies D's error by the ratio."""
    info = describe(denoiser)
    s_min = info.sigma_min if sigma_min is None else float(sigma_min)
    if sigma_max is not None:
        return s_min, float(sigma_max)
    table = info.sigma_table
    if table is not None and len(table) > 2 and float(table[-1]) > TOP_GAP * float(table[-2]):
        return s_min, min(info.sigma_max, float(table[-2]))
    return s_min, info.sigma_max


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
    """SDEdit (Meng et al. 2022, Alg. 1, VE-SDE form): x = x0 + sigma z at sigma = strength_sigma(strength) on
    `sigma_range`, then `sample` with any method (deterministic or stochastic) from sigma down to 0 in at most nfe
    calls. Strength 0 returns x0; strength 1 starts from x0 + sigma_max z, sampling from noise up to x0 / sigma_max."""
    s_min, s_max = sigma_range(denoiser, sigma_min, sigma_max)
    s = strength_sigma(strength, s_min, s_max)
    if s == 0:
        return x0.clone()
    table, grid_args = describe(denoiser).sigma_table, {}
    if table is not None:  # a discrete-time model: start at a level of its table, and grid from there (tail 0: the
        # method's named grid on the table's levels down to sigma_min, not the trailing table of the range)
        s, grid_args = float(grids.nearest_in_table(torch.tensor([s, 0.0]), table)[0]), {"tail": 0.0}
    x = x0 + s * noise_like(x0, generator)
    return sample(denoiser, x, method=method, nfe=nfe, sigma_min=s_min, sigma_max=s, generator=generator,
                  **grid_args, **options)


@dataclass(frozen=True)
class Inversion:
    """DDIM inversion's result: the noise at sigma_max, the reconstruction from it, and the per-sample RMS error of
    the reconstruction (B,)."""

    noise: Tensor
    reconstruction: Tensor
    error: Tensor


INVERTIBLE = {"ddim": 1, "heun": 2}  # the deterministic samplers inversion runs backwards: calls per step up


def inversion_levels(denoiser: Any, nfe: int, sigma_min: float | None, sigma_max: float | None,
                     method: str = "ddim") -> Tensor:
    """The steps + 1 decreasing levels from sigma_max to sigma_min (no final 0) inversion runs up, steps the most
    whose calls fit in nfe (nfe for DDIM, nfe // 2 for Heun): the Karras grid (rho 7) on `sigma_range`; for a
    discrete-time model moved to its table's nearest levels (`grids.nearest_in_table`), so D is only asked where it
    was trained."""
    if method not in INVERTIBLE:
        raise ValueError(f"inversion runs {', '.join(INVERTIBLE)} backwards, not {method!r}")
    if nfe < INVERTIBLE[method]:
        raise ValueError(f"nfe must be >= {INVERTIBLE[method]} for {method} inversion, got {nfe}")
    s_min, s_max = sigma_range(denoiser, sigma_min, sigma_max)
    table = describe(denoiser).sigma_table
    levels = grids.karras(nfe // INVERTIBLE[method] + 1, s_min, s_max)
    return (levels if table is None else grids.nearest_in_table(levels, table))[:-1]


def invert_step(denoiser: Any, x: Tensor, s: float, s_up: float, method: str) -> Tensor:
    """One step up s -> s_up > s of the probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma: DDIM's
    x' = D + (s_up / s)(x - D) (Euler), or Heun's trapezoid (Karras et al. 2022, Alg. 1) except where Heun's
    sampler would take this step down as Euler's (`first_order`)."""
    d = denoiser(x, sigma_batch(s, x))
    x_euler = torch.lerp(d, x, s_up / s)
    if method == "ddim" or first_order(s_up, s, MAX_STEP_RATIO):
        return x_euler
    d_up = denoiser(x_euler, sigma_batch(s_up, x))
    return x + 0.5 * (s_up - s) * ((x - d) / s + (x_euler - d_up) / s_up)


@torch.no_grad()
def ddim_invert(denoiser: Any, x0: Tensor, *, nfe: int = 50, sigma_min: float | None = None,
                sigma_max: float | None = None, reconstruct: bool = True, method: str = "ddim") -> Inversion:
    """DDIM inversion (Song, Meng & Ermon 2021, Sec. 4.3; Dhariwal & Nichol 2021, App. F): x0 taken as the state at
    sigma_min, then DDIM's step x' = D + (s' / s)(x - D) (Euler on the probability-flow ODE in these coordinates) up
    the increasing grid to sigma_max, nfe calls (method="heun": Heun's step, at most nfe calls); with
    `reconstruct`, the same sampler from that noise back down the same grid to 0 (`decode`). The error falls at the
    sampler's order (1 for DDIM, 2 for Heun) as nfe grows."""
    levels = inversion_levels(denoiser, nfe, sigma_min, sigma_max, method).flip(0).tolist()  # increasing
    x = x0
    for s, s_up in zip(levels[:-1], levels[1:]):
        x = invert_step(denoiser, x, s, s_up, method)
    if not reconstruct:
        return Inversion(x, x0, torch.full((len(x0),), math.nan, dtype=x0.dtype))
    rec = decode(denoiser, x, nfe=nfe, sigma_min=sigma_min, sigma_max=sigma_max, method=method)
    return Inversion(x, rec, (rec - x0).reshape(len(x0), -1).pow(2).mean(1).sqrt())


def decode(denoiser: Any, noise: Tensor, *, nfe: int = 50, sigma_min: float | None = None,
           sigma_max: float | None = None, method: str = "ddim") -> Tensor:
    """The sampler from inverted noise down the inversion's own levels, then to 0 (DDIM: nfe + 1 calls; Heun: two
    per step and one for the step to 0)."""
    levels = inversion_levels(denoiser, nfe, sigma_min, sigma_max, method)
    return sample(denoiser, noise, method=method, grid=grids.append_zero(levels))


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
                sigma_min: float | None = None, sigma_max: float | None = None, method: str = "ddim") -> Tensor:
    """Interpolation between two samples (Song, Meng & Ermon 2021, Sec. 5.3): invert both (1, ...) rows, slerp
    their noises at each t in ts, decode each; returns (len(ts), ...)."""
    both = ddim_invert(denoiser, torch.cat([x_a, x_b]), nfe=nfe, sigma_min=sigma_min, sigma_max=sigma_max,
                       reconstruct=False, method=method).noise
    z = torch.cat([slerp(both[:1], both[1:], float(t)) for t in ts])
    return decode(denoiser, z, nfe=nfe, sigma_min=sigma_min, sigma_max=sigma_max, method=method)
