"""Stochastic samplers built on probability-flow steps plus fresh noise: Euler-ancestral and EDM's churn sampler."""

from __future__ import annotations

import math
from typing import Any

import torch

from ..denoiser import sigma_batch
from .common import (MAX_STEP_RATIO, Callback, ancestral_split, check_sigmas, first_order, noise_like,
                     report, to_d)
from .method import Method

Tensor = torch.Tensor


@torch.no_grad()
def sample_euler_ancestral(denoiser: Any, x: Tensor, sigmas: Tensor, *, generator: torch.Generator | None = None,
                           callback: Callback | None = None, eta: float = 1.0, s_noise: float = 1.0,
                           **cond: Any) -> Tensor:
    """Euler step to sigma_down, then noise of std sigma_up (DDIM's split, Song et al. 2021, eq. 16 in VE
    coordinates; eta = 1 is DDPM's ancestral step, Ho et al. 2020, Alg. 2)."""
    sigmas = check_sigmas(x, sigmas).tolist()
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        x0 = denoiser(x, sigma_batch(s, x), **cond)
        report(callback, i, x, s, s_next, x0)
        s_down, s_up = ancestral_split(s, s_next, eta)
        x = torch.lerp(x0, x, s_down / s)  # Euler to sigma_down: x + (s_down - s)(x - x0) / s
        if s_up > 0:
            x = x + s_up * s_noise * noise_like(x, generator)
    return x


@torch.no_grad()
def sample_edm_stochastic(denoiser: Any, x: Tensor, sigmas: Tensor, *, generator: torch.Generator | None = None,
                          callback: Callback | None = None, s_churn: float = 40.0, s_tmin: float = 0.05,
                          s_tmax: float = 50.0, s_noise: float = 1.0, max_ratio: float = MAX_STEP_RATIO,
                          **cond: Any) -> Tensor:
    """EDM's stochastic sampler (Karras et al. 2022, Alg. 2): raise sigma to (1 + gamma) sigma with fresh noise, then
    a Heun step (Euler when sigma_next = 0 or sigma / sigma_next > max_ratio, `common.first_order`);
    gamma = min(S_churn / N, sqrt 2 - 1) inside [S_tmin, S_tmax]."""
    sigmas = check_sigmas(x, sigmas).tolist()
    n = len(sigmas) - 1
    for i in range(n):
        s, s_next = sigmas[i], sigmas[i + 1]
        gamma = min(s_churn / n, math.sqrt(2) - 1) if s_tmin <= s <= s_tmax else 0.0
        s_hat = s * (1 + gamma)
        if gamma > 0:
            x = x + math.sqrt(s_hat**2 - s**2) * s_noise * noise_like(x, generator)
        x0 = denoiser(x, sigma_batch(s_hat, x), **cond)
        report(callback, i, x, s_hat, s_next, x0)
        d = to_d(x, s_hat, x0)
        x_next = x + (s_next - s_hat) * d
        if not first_order(s, s_next, max_ratio):
            d_next = to_d(x_next, s_next, denoiser(x_next, sigma_batch(s_next, x), **cond))
            x_next = x + (s_next - s_hat) * 0.5 * (d + d_next)
        x = x_next
    return x


EULER_ANCESTRAL = Method(sample_euler_ancestral, "SDE", 1, 1)
EDM_STOCHASTIC = Method(sample_edm_stochastic, "SDE", 2, 2, final_evals=1, long_steps=True)
