"""DDRM (Kawar et al. 2022): per-coordinate updates in A's SVD basis, in VE coordinates as in the paper."""

from __future__ import annotations

from typing import Any

import torch

from ..denoiser import sigma_batch
from ..sampling.common import Generators, check_sigmas, noise_like
from .common import check_eta, spectral
from .method import InverseMethod
from .operators import Operator

Tensor = torch.Tensor


@torch.no_grad()
def solve_ddrm(denoiser: Any, y: Tensor, operator: Operator, x: Tensor, sigmas: Tensor, *, noise_std: float,
               generator: Generators = None, eta: float = 1.0, eta_b: float = 1.0) -> Tensor:
    """DDRM (Kawar et al. 2022, eqs. 7-8): with x_bar = V^T x, x0_bar = V^T D(x, sigma), y_bar = S^+ U^T y and
    tau_i = noise_std / s_i, each coordinate steps to sigma' as

        s_i = 0:           x0_bar + sqrt(1 - eta^2) sigma' (x_bar - x0_bar) / sigma + eta sigma' z
        sigma' < tau_i:    x0_bar + sqrt(1 - eta^2) sigma' (y_bar - x0_bar) / tau_i + eta sigma' z
        sigma' >= tau_i:   (1 - eta_b) x0_bar + eta_b y_bar + sqrt(sigma'^2 - tau_i^2 eta_b^2) z
    """
    check_eta(eta)
    if not 0 <= eta_b <= 1:
        raise ValueError(f"eta_b must lie in [0, 1], got {eta_b}")
    sp = spectral(operator, y, tuple(x.shape[1:]), noise_std)
    tau = torch.where(sp.observed, sp.tau, 0)
    sig = check_sigmas(x, sigmas).tolist()
    for s, s_next in zip(sig[:-1], sig[1:]):
        xb, x0b = sp.svd.vt(x), sp.svd.vt(denoiser(x, sigma_batch(s, x)))  # (B, n)
        z = noise_like(xb, generator)
        free = x0b + (1 - eta**2) ** 0.5 * s_next * (xb - x0b) / s + eta * s_next * z
        weak = x0b + (1 - eta**2) ** 0.5 * s_next * (sp.y_bar - x0b) / tau.clamp_min(1e-30) + eta * s_next * z
        strong = (1 - eta_b) * x0b + eta_b * sp.y_bar + (s_next**2 - tau**2 * eta_b**2).clamp_min(0).sqrt() * z
        xb = torch.where(~sp.observed, free, torch.where(s_next < tau, weak, strong))
        x = sp.svd.v(xb)
    return x


DDRM = InverseMethod(solve_ddrm, "spectral", "approximate posterior (the marginals q(x_t | x0, y) of Kawar et al.)")
