"""Samplers as pure functions over a denoiser and a sigma grid, a registry of them, and one entry point."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..processes import DiscreteVP
from . import grids
from .ddim import sample_ddim
from .ddpm import sample_ddpm

Tensor = torch.Tensor


@dataclass(frozen=True)
class Method:
    """A sampler with its kind (ODE/SDE), theoretical order and denoiser calls per step."""

    fn: Callable[..., Tensor]
    kind: str
    order: int
    evals_per_step: int


METHODS: dict[str, Method] = {
    "ddim": Method(sample_ddim, "ODE", 1, 1),
    "ddpm": Method(sample_ddpm, "SDE", 1, 1),
}


def default_grid(denoiser: Any, steps: int, sigma_min: float, sigma_max: float) -> Tensor:
    """A DDPM table respaced with trailing spacing for discrete-time models, else Karras' rho = 7 grid."""
    process = getattr(denoiser, "process", None)
    if isinstance(process, DiscreteVP) and getattr(denoiser, "discrete", False):
        return grids.discrete_sigmas(process, min(steps, process.T), "trailing")
    return grids.karras(steps, sigma_min, sigma_max)


def sample(denoiser: Any, x: Tensor, *, method: str = "ddim", nfe: int = 50, sigma_min: float | None = None,
           sigma_max: float | None = None, grid: Tensor | None = None, generator: torch.Generator | None = None,
           callback: Callable[[dict[str, Any]], None] | None = None, **options: Any) -> Tensor:
    """Sample from x (already at sigma_max) down to sigma = 0 with at most `nfe` denoiser calls."""
    if method not in METHODS:
        raise ValueError(f"unknown sampler {method!r}; choose one of {sorted(METHODS)}")
    m = METHODS[method]
    if grid is None:
        steps = nfe // m.evals_per_step
        if steps < 1:
            raise ValueError(f"nfe={nfe} is below one step of {method} ({m.evals_per_step} evaluations)")
        s_min = float(getattr(denoiser, "sigma_min", 0.002) if sigma_min is None else sigma_min)
        s_max = float(getattr(denoiser, "sigma_max", 80.0) if sigma_max is None else sigma_max)
        grid = default_grid(denoiser, steps, s_min, s_max)
    return m.fn(denoiser, x, grid, generator=generator, callback=callback, **options)


__all__ = ["METHODS", "Method", "grids", "sample", "sample_ddim", "sample_ddpm"]
