"""Posterior sampling by likelihood guidance through the denoiser's Jacobian: DPS (Chung et al. 2023) and
Pi-GDM (Song et al. 2023), both in VE coordinates."""

from __future__ import annotations

from typing import Any

import torch

from ..denoiser import describe, sigma_batch
from ..sampling.common import Generators, check_sigmas
from .common import check_eta, ddim_step, spectral
from .method import InverseMethod
from .operators import Operator

Tensor = torch.Tensor


def _rows(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1)


def solve_dps(denoiser: Any, y: Tensor, operator: Operator, x: Tensor, sigmas: Tensor, *, noise_std: float,
              generator: Generators = None, zeta: float = 1.0, eta: float = 1.0, gamma: float = 0.0) -> Tensor:
    """DPS (Chung et al. 2023, Alg. 1): x' = DDIM_eta(x, D(x)) - zeta_i grad_x ||y - A D(x, sigma)||^2 with
    zeta_i = zeta / ||y - A D(x)|| per row (their App. C). Alg. 1 steps in VP coordinates x_vp = alpha x,
    alpha = (1 + sigma^2)^-1/2; the same step in VE coordinates scales the gradient by 1 / (alpha alpha').
    The posterior it targets is approximate (x0 | x taken as a point mass at D(x)); noise_std enters only
    through the residual. A needs only to be differentiable: a `DecodedOperator` A(decode(z)) makes this latent DPS.

    gamma > 0 (latent models only) adds the gluing term of Rout et al. 2023 (their GML-DPS step):
    - gamma grad_x ||z0 - E(decode(z0))||^2 at z0 = D(x), which pulls z0 toward latents the autoencoder maps to
    themselves (the operator's `gluing`)."""
    check_eta(eta)
    if gamma < 0 or (gamma > 0 and not hasattr(operator, "gluing")):
        raise ValueError(f"gamma (the gluing weight of latent DPS, Rout et al. 2023) must be >= 0 and applies to a "
                         f"latent model's DecodedOperator only, got gamma={gamma} with {type(operator).__name__}")
    sig = check_sigmas(x, sigmas).tolist()
    for s, s_next in zip(sig[:-1], sig[1:]):
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            x0 = denoiser(xg, sigma_batch(s, xg))
            r2 = _rows(y - operator(x0)).pow(2).sum(1)  # (B,)
            (grad,) = torch.autograd.grad(r2.sum(), xg, retain_graph=gamma > 0)
            if gamma > 0:
                (glue,) = torch.autograd.grad(operator.gluing(x0).sum(), xg)  # d/dx sum_b ||z0 - E(D(z0))||^2
        x0, r2 = x0.detach(), r2.detach()
        vp = ((1 + s**2) * (1 + s_next**2)) ** 0.5  # VP -> VE factor of the step
        step = zeta * vp / r2.sqrt().clamp_min(1e-12)
        x = ddim_step(x, x0, s, s_next, eta, generator) - step.reshape(-1, *[1] * (x.ndim - 1)) * grad
        if gamma > 0:
            x = x - gamma * vp * glue
    return x.detach()


def _no_overshoot(operator: Operator, step: Tensor, e: Tensor) -> Tensor:
    """Per row, lambda = min(1, <A d, e> / ||A d||^2) (B, 1, ...), clamped at 0: the step d along which the
    residual e = y - A D falls most, cut where it would pass the least-squares fit. Pi-GDM's d is exact (lambda = 1)
    when x0 | x has covariance r^2 I; on correlated data (images: A's coarse components vary far more than r^2) and
    through a trained network's Jacobian at large sigma it overshoots by orders of magnitude and diverges."""
    ad = _rows(operator(step))
    lam = ((ad * _rows(e)).sum(1) / ad.pow(2).sum(1).clamp_min(1e-30)).clamp(0.0, 1.0)
    return lam.reshape(-1, *[1] * (step.ndim - 1))


def solve_pigdm(denoiser: Any, y: Tensor, operator: Operator, x: Tensor, sigmas: Tensor, *, noise_std: float,
                generator: Generators = None, eta: float = 1.0, scale: float = 1.0) -> Tensor:
    """Pi-GDM (Song et al. 2023, Alg. 1): p(y | x) ~ N(A D(x), r^2 A A^T + noise_std^2 I) with
    r^2 = sigma^2 sigma_data^2 / (sigma^2 + sigma_data^2) (their r_t^2 = sigma^2 / (1 + sigma^2) for unit-variance
    data; sigma_data from the denoiser, else 1), whose gradient is the vector-Jacobian product
    g = (dD/dx)^T A^T (r^2 A A^T + noise_std^2)^-1 (y - A D) (their eq. 8, taken through A's SVD); the step is
    DDIM(eta) around the guided estimate D + lambda scale sigma^2 g (Tweedie's formula for the posterior score), with
    lambda <= 1 the largest fraction of the step that does not carry A D past y (`_no_overshoot`; 1 where the
    covariance r^2 I is right, as in the paper's derivation)."""
    check_eta(eta)
    sp = spectral(operator, y, tuple(x.shape[1:]), noise_std)
    s_obs = sp.svd.s.to(x)
    s_data = describe(denoiser).sigma_data or 1.0
    sig = check_sigmas(x, sigmas).tolist()
    for s, s_next in zip(sig[:-1], sig[1:]):
        r2 = s**2 * s_data**2 / (s**2 + s_data**2)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            x0 = denoiser(xg, sigma_batch(s, xg))
            e = sp.svd.ut(y - operator(x0.detach()))  # U^T (y - A D), (B, n)
            v = sp.svd.v(s_obs / (r2 * s_obs**2 + noise_std**2).clamp_min(1e-30) * e)  # A^T (r^2 AA^T + s_y^2)^-1 e
            (g,) = torch.autograd.grad((x0 * v).sum(), xg)
        step = scale * s**2 * g
        guided = x0.detach() + _no_overshoot(operator, step, y - operator(x0.detach())) * step
        x = ddim_step(x, guided, s, s_next, eta, generator)
    return x.detach()


DPS = InverseMethod(solve_dps, "guidance", "approximate posterior (x0 | x as a point mass at D(x))", needs_linear=False)
PIGDM = InverseMethod(solve_pigdm, "guidance", "approximate posterior (x0 | x ~ N(D(x), r^2 I))")
