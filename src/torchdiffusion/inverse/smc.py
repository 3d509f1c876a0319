"""A twisted sequential Monte Carlo posterior sampler: exact for a linear-Gaussian measurement as particles grow.

The diffusion's reverse chain p(x_k | x_{k+1}) (DDPM's Gaussian step around D, Ho et al. 2020, eq. 7, in VE
coordinates) is twisted by potentials g_k(x) = prod_i N(y_bar_i; x_bar_i, sigma_k^2 + tau_i^2) over the observed
coordinates of A's SVD basis (x_bar = V^T x, y_bar = S^+ U^T y, tau_i = noise_std / s_i): y_bar_i is x0_i noised to
tau_i and x_i is x0_i noised to sigma_k, so g_k is p(y | x_k) with x0 | x_k taken as N(x_k, sigma_k^2) -- MCGdiff's
potential (Cardoso et al. 2023, eq. 3.3, in VE coordinates) widened by tau_i^2 for noisy measurements. Any positive
potentials give a Feynman-Kac model whose last target p(x_{0:N}) g_0(x_0) is the posterior of the discretised chain
under the likelihood g_0 = N(y_bar; x_bar, sigma_min^2 + tau^2) (the twisted SMC of Wu et al. 2023, Sec. 3), so the
draws converge to it as particles grow. Both factors are Gaussian in x_bar, so the proposal is their normalised
product (fully adapted) and the incremental weight int p(x_k | x_{k+1}) g_k dx_k / g_{k+1}(x_{k+1}) is closed form
and known before proposing: particles are resampled first (Pitt & Shephard 1999's auxiliary particle filter).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..denoiser import sigma_batch
from ..sampling.common import Generators, check_sigmas
from .common import Spectral, row_noise, row_uniform, spectral
from .method import InverseMethod
from .operators import Operator

Tensor = torch.Tensor


def log_normal(y: Tensor, mean: Tensor, var: Tensor, where: Tensor) -> Tensor:
    """sum_i log N(y_i; mean_i, var_i) over the coordinates `where`, per row (B,)."""
    v = torch.where(where, var, 1)
    terms = -0.5 * ((y - mean) ** 2 / v + torch.log(2 * math.pi * v))
    return torch.where(where, terms, 0).sum(-1)


def systematic_resample(logw: Tensor, u0: Tensor) -> Tensor:
    """Ancestor indices (B, P) by systematic resampling of each row's normalised weights at offsets u0 (B,) in
    [0, 1) (Kitagawa 1996)."""
    B, P = logw.shape
    cdf = torch.softmax(logw, dim=1).cumsum(1)
    u = (torch.arange(P, dtype=logw.dtype, device=logw.device) + u0[:, None]) / P
    return torch.searchsorted(cdf, u.contiguous()).clamp_max(P - 1)


def _twist(sp: Spectral, sigma: float) -> Tensor:
    """The potential's variance sigma^2 + tau_i^2 per spectral coordinate (n,) (inf where unobserved)."""
    return sigma**2 + sp.tau**2


@torch.no_grad()
def solve_smc(denoiser: Any, y: Tensor, operator: Operator, x: Tensor, sigmas: Tensor, *, noise_std: float,
              generator: Generators = None, particles: int = 64, ess_threshold: float = 0.5) -> Tensor:
    """Twisted SMC with fully adapted proposals (module docstring): `particles` per row of y (row b's at x[b * P:
    (b + 1) P]), run down the grid to its last nonzero level sigma_min (the step to 0 is not taken: the likelihood
    there is singular when noise_std = 0); resampled (systematic) when the effective sample size falls below
    ess_threshold * particles; one particle per row returned, drawn by the final weights."""
    if particles < 1 or not 0 <= ess_threshold <= 1:
        raise ValueError(f"need particles >= 1 and ess_threshold in [0, 1], got {particles}, {ess_threshold}")
    P, B = particles, len(y)
    sp = spectral(operator, y.repeat_interleave(P, 0), tuple(x.shape[1:]), noise_std)
    obs = sp.observed
    sig = [s for s in check_sigmas(x, sigmas).tolist() if s > 0]
    logw = torch.zeros(B, P, dtype=x.dtype, device=x.device)
    xb = sp.svd.vt(x)  # (B * P, n): particles in spectral coordinates
    for k, (s, s_next) in enumerate(zip(sig[:-1], sig[1:])):
        x0b = sp.svd.vt(denoiser(sp.svd.v(xb), sigma_batch(s, x)))
        mean = x0b + (s_next**2 / s**2) * (xb - x0b)  # DDPM's reverse step N(mean, v I) (in any orthonormal basis)
        v = s_next**2 * (s**2 - s_next**2) / s**2
        # incremental weight: int p(x' | x) g_{k+1}(x') dx' / g_k(x) (g at the start is a constant: x ~ N(0, s^2 I))
        log_pred = log_normal(sp.y_bar, mean, v + _twist(sp, s_next), obs)
        logw = logw + (log_pred - (log_normal(sp.y_bar, xb, _twist(sp, s), obs) if k > 0 else 0)).reshape(B, P)
        ess = 1 / torch.softmax(logw, 1).pow(2).sum(1)  # (B,)
        u0 = row_uniform(B, generator, logw)  # drawn at every step, so a row's stream never depends on other rows
        if bool((ess < ess_threshold * P).any()):
            redo = (ess < ess_threshold * P)[:, None]
            idx = torch.where(redo, systematic_resample(logw, u0), torch.arange(P, device=x.device)[None])
            rows = (idx + P * torch.arange(B, device=x.device)[:, None]).reshape(-1)
            mean, logw = mean[rows], torch.where(redo, torch.zeros_like(logw), logw)
        # propose from p(x' | x) g_{k+1}(x'): per observed coordinate a product of two Gaussians
        twist = _twist(sp, s_next)
        prec = 1 / v + torch.where(obs, 1 / twist, 0)
        post_mean = (mean / v + torch.where(obs, sp.y_bar / twist, 0)) / prec
        xb = post_mean + prec.rsqrt() * row_noise(xb, generator, P)
    cdf = torch.softmax(logw, 1).cumsum(1)  # one particle per row drawn by its weight (inverse CDF)
    pick = torch.searchsorted(cdf, row_uniform(B, generator, logw)[:, None]).clamp_max(P - 1)[:, 0]  # (B,)
    return sp.svd.v(xb[pick + P * torch.arange(B, device=x.device)])


SMC = InverseMethod(solve_smc, "SMC", "the exact posterior of the discretised diffusion, as particles grow",
                    cost=lambda steps, o: max(steps - 1, 0), particles=True, exact=True)
