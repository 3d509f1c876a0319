"""DDPM ancestral sampling over a denoiser, in variance-exploding coordinates."""

from __future__ import annotations

import math
from typing import Any

import torch

from ..denoiser import sigma_batch
from .common import Callback, check_sigmas, noise_like, report
from .method import Method

Tensor = torch.Tensor
VARIANCES = ("beta_tilde", "beta", "learned")


def ddpm_step_variances(s: float, s_next: float) -> tuple[float, float]:
    """(beta_tilde, beta) of one step s -> s_next, as VE-coordinate variances.

    With x = x_t / sqrt(abar_t), the DDPM posterior q(x_{t-1} | x_t, x0) has mean x0 + (s'^2/s^2)(x - x0) and
    variance beta-tilde / abar_{t-1} = s'^2 (s^2 - s'^2) / s^2 (Ho et al. 2020, eqs. 6-7); the larger choice
    beta_t / abar_{t-1} = (s^2 - s'^2)(1 + s'^2) / (1 + s^2) uses the VP relation abar = 1 / (1 + s^2).
    """
    s2, n2 = s * s, s_next * s_next
    return n2 * (s2 - n2) / s2, (s2 - n2) * (1 + n2) / (1 + s2)


@torch.no_grad()
def sample_ddpm(denoiser: Any, x: Tensor, sigmas: Tensor, *, generator: torch.Generator | None = None,
                callback: Callback | None = None, variance: str = "beta_tilde", **cond: Any) -> Tensor:
    """Ancestral sampling x_{t-1} ~ p(x_{t-1} | x_t) (Ho et al. 2020, Algorithm 2; learned variance: Nichol &
    Dhariwal 2021, eq. 15). `sigmas` is any decreasing grid (a DDPM table or a respacing of it) ending in 0."""
    if variance not in VARIANCES:
        raise ValueError(f"unknown DDPM variance {variance!r}; choose one of {VARIANCES}")
    sigmas = check_sigmas(x, sigmas).tolist()
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        sig = sigma_batch(s, x)
        if variance == "learned":
            x0, frac = denoiser.forward_with_variance(x, sig, **cond)
            if frac is None:
                raise ValueError("variance='learned' needs a denoiser with a learned-variance head")
        else:
            x0, frac = denoiser(x, sig, **cond), None
        report(callback, i, x, s, s_next, x0)
        if s_next == 0:
            x = x0
            continue
        mean = x0 + (s_next**2 / s**2) * (x - x0)
        small, large = ddpm_step_variances(s, s_next)
        if variance == "beta_tilde":
            std = small**0.5
        elif variance == "beta":
            std = large**0.5
        else:  # log-variance interpolation between beta and beta-tilde, per element
            std = torch.exp(0.5 * (frac * math.log(large) + (1 - frac) * math.log(small)))
        x = mean + std * noise_like(x, generator)
    return x


DDPM = Method(sample_ddpm, "SDE", 1, 1)
