"""Reverse-SDE and Langevin samplers (Song et al. 2021; Song & Ermon 2019), with the score (D - x) / sigma^2.

Every sampler here ends a grid that reaches sigma = 0 with the denoising step x = D(x, sigma_min) (Tweedie), since
the reverse SDE's drift is singular at 0.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..denoiser import sigma_batch
from .common import Callback, check_sigmas, noise_like, report
from .method import Method

Tensor = torch.Tensor


@torch.no_grad()
def sample_euler_maruyama(denoiser: Any, x: Tensor, sigmas: Tensor, *, generator: torch.Generator | None = None,
                          callback: Callback | None = None, s_noise: float = 1.0, **cond: Any) -> Tensor:
    """Euler-Maruyama on the reverse VE SDE dx = -2 sigma score dsigma + sqrt(2 sigma) dw (Song et al. 2021, eq. 6
    with g^2 = d sigma^2 / dsigma; Karras et al. 2022, eq. 6 with sigma(t) = t and beta(t) = 1 / sigma)."""
    sigmas = check_sigmas(x, sigmas).tolist()
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        x0 = denoiser(x, sigma_batch(s, x), **cond)
        report(callback, i, x, s, s_next, x0)
        if s_next == 0:
            x = x0
            continue
        ds = s - s_next  # > 0: the reverse SDE runs down in sigma
        x = x + (2 * ds / s) * (x0 - x) + math.sqrt(2 * s * ds) * s_noise * noise_like(x, generator)
    return x


def _norm(v: Tensor) -> Tensor:
    """Batch mean of per-sample L2 norms (the reduction of Song et al.'s reference implementation)."""
    return v.reshape(v.shape[0], -1).norm(dim=1).mean()


@torch.no_grad()
def sample_pc(denoiser: Any, x: Tensor, sigmas: Tensor, *, generator: torch.Generator | None = None,
              callback: Callback | None = None, snr: float = 0.16, n_corrector: int = 1, form: str = "ve",
              **cond: Any) -> Tensor:
    """Predictor-corrector sampling (Song et al. 2021, Alg. 2 (VE) / Alg. 3 (VP)): a reverse-diffusion predictor step,
    then `n_corrector` Langevin steps at the new level with eps = 2 alpha (snr ||z|| / ||score||)^2 (Alg. 4 / 5).

    The VP form acts on x_vp = a x with a(sigma) = 1 / sqrt(1 + sigma^2), beta_i = 1 - abar_(i+1) / abar_i; its
    Langevin step in x_vp equals the VE one with eps scaled by alpha_i = 1 - beta_i. ||.|| are batch means of
    per-sample norms, as in the reference code: per-sample ratios are unstable in low dimension.
    """
    if form not in ("ve", "vp"):
        raise ValueError(f"form must be 've' or 'vp', got {form!r}")
    sigmas = check_sigmas(x, sigmas).tolist()
    n = len(sigmas) - 1
    for i in range(n):
        s, s_next = sigmas[i], sigmas[i + 1]
        x0 = denoiser(x, sigma_batch(s, x), **cond)
        report(callback, i, x, s, s_next, x0)
        if s_next == 0:
            x = x0
            continue
        z = noise_like(x, generator)
        if form == "ve":  # x' = x + (s^2 - s'^2) score + sqrt(s^2 - s'^2) z
            x = x + (1 - s_next**2 / s**2) * (x0 - x) + math.sqrt(s**2 - s_next**2) * z
        else:  # x_vp' = (2 - sqrt(1 - beta)) x_vp + beta score_vp + sqrt(beta) z, score_vp = (x0 - x) / (a s^2)
            a, a_next = (1 + s**2) ** -0.5, (1 + s_next**2) ** -0.5
            beta = (s**2 - s_next**2) / (1 + s**2)
            xv = (2 - math.sqrt(1 - beta)) * a * x + beta * (x0 - x) / (a * s**2) + math.sqrt(beta) * z
            x = xv / a_next
        s_after = sigmas[i + 2] if i + 2 <= n else 0.0
        alpha = 1.0 if form == "ve" else (1 + s_after**2) / (1 + s_next**2)
        for _ in range(n_corrector):
            score = (denoiser(x, sigma_batch(s_next, x), **cond) - x) / s_next**2
            z = noise_like(x, generator)
            eps = 2 * alpha * (snr * _norm(z) / _norm(score)) ** 2
            x = x + eps * score + torch.sqrt(2 * eps) * z
    return x


@torch.no_grad()
def sample_ald(denoiser: Any, x: Tensor, sigmas: Tensor, *, generator: torch.Generator | None = None,
               callback: Callback | None = None, eps: float | None = None, n_steps: int = 1, **cond: Any) -> Tensor:
    """Annealed Langevin dynamics (Song & Ermon 2019, Alg. 1): each step anneals to the next level sigma_i and runs
    n_steps of x += alpha_i/2 score + sqrt(alpha_i) z there, alpha_i = eps sigma_i^2 / sigma_L^2; eps defaults to the
    paper's 2e-5 at sigma_L = 0.01, i.e. 0.2 sigma_L^2. x starts at sigmas[0]; a step to 0 is x = D(x, sigma_L)."""
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    sigmas = check_sigmas(x, sigmas).tolist()
    s_last = sigmas[-1] if sigmas[-1] > 0 else sigmas[-2]
    eps = 0.2 * s_last**2 if eps is None else eps
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        if s_next == 0:
            x0 = denoiser(x, sigma_batch(s, x), **cond)
            report(callback, i, x, s, s_next, x0)
            x = x0
            continue
        alpha = eps * s_next**2 / s_last**2
        for t in range(n_steps):
            x0 = denoiser(x, sigma_batch(s_next, x), **cond)
            if t == 0:
                report(callback, i, x, s, s_next, x0)
            x = x + (0.5 * alpha / s_next**2) * (x0 - x) + math.sqrt(alpha) * noise_like(x, generator)
    return x


EM = Method(sample_euler_maruyama, "SDE", 1, 1)
PC = Method(sample_pc, "SDE", 1, 2, final_evals=1, cost=lambda o: (1 + o.get("n_corrector", 1), 1))
ALD = Method(sample_ald, "SDE", 1, 1, final_evals=1, cost=lambda o: (o.get("n_steps", 1), 1))
