"""DDIM over a denoiser, in variance-exploding coordinates."""

from __future__ import annotations

from typing import Any

import torch

from ..denoiser import sigma_batch
from .common import Callback, check_sigmas, noise_like, report
from .method import Method

Tensor = torch.Tensor


@torch.no_grad()
def sample_ddim(denoiser: Any, x: Tensor, sigmas: Tensor, *, generator: torch.Generator | None = None,
                callback: Callback | None = None, eta: float = 0.0, **cond: Any) -> Tensor:
    """DDIM (Song, Meng & Ermon 2021, eq. 12): x' = x0 + sqrt(s'^2 - c^2) eps_hat + c z.

    In VE coordinates the DDIM noise sigma_t(eta) / sqrt(abar_{t-1}) becomes c^2 = eta^2 s'^2 (s^2 - s'^2) / s^2,
    so eta = 0 is the Euler step of the probability-flow ODE and eta = 1 is DDPM with beta-tilde.
    """
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    sigmas = check_sigmas(x, sigmas).tolist()
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        x0 = denoiser(x, sigma_batch(s, x), **cond)
        report(callback, i, x, s, s_next, x0)
        c2 = eta**2 * s_next**2 * (s**2 - s_next**2) / s**2
        x = torch.lerp(x0, x, max(s_next**2 - c2, 0.0) ** 0.5 / s)  # x0 + sqrt(s'^2 - c^2) eps, eps = (x - x0) / s
        if c2 > 0:
            x = x + c2**0.5 * noise_like(x, generator)
    return x


DDIM = Method(sample_ddim, "ODE", 1, 1)
