"""Samplers of few-step students: N denoiser calls on the few-step grid (`grids.fewstep`) that they were trained on."""

from __future__ import annotations

from typing import Any

import torch

from ..denoiser import describe, sigma_batch
from .common import Callback, check_sigmas, noise_like, report
from .ddim import sample_ddim
from .method import Method

Tensor = torch.Tensor


@torch.no_grad()
def sample_consistency(denoiser: Any, x: Tensor, sigmas: Tensor, *, generator: torch.Generator | None = None,
                       callback: Callback | None = None, **cond: Any) -> Tensor:
    """Multistep consistency sampling (Song et al. 2023, Alg. 1): x0 = f(x, s_0); then for each later level s,
    x = x0 + sqrt(s^2 - sigma_min^2) z and x0 = f(x, s). One call per nonzero level; the last x0 is the sample."""
    sigmas = check_sigmas(x, sigmas).tolist()
    s_min = describe(denoiser).sigma_min
    x0 = x
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        if i > 0:  # re-noise the previous estimate to level s (the consistency function's boundary is sigma_min)
            x = x0 + max(s**2 - s_min**2, 0.0) ** 0.5 * noise_like(x0, generator)
        x0 = denoiser(x, sigma_batch(s, x), **cond)
        report(callback, i, x, s, s_next, x0)
    return x0


@torch.no_grad()
def sample_ddim_fewstep(denoiser: Any, x: Tensor, sigmas: Tensor, *, generator: torch.Generator | None = None,
                        callback: Callback | None = None, **cond: Any) -> Tensor:
    """Deterministic DDIM (Song, Meng & Ermon 2021, eq. 12 with eta = 0) on the few-step grid: the sampler of
    progressive-distillation students (Salimans & Ho 2022, Alg. 2) and of reflowed flows, for which DDIM is Euler's
    method in the flow's own time (Liu et al. 2023, eq. 1)."""
    return sample_ddim(denoiser, x, sigmas, generator=generator, callback=callback, **cond)


CONSISTENCY = Method(sample_consistency, "SDE", 1, 1, grid="fewstep")
DDIM_FEWSTEP = Method(sample_ddim_fewstep, "ODE", 1, 1, grid="fewstep")
