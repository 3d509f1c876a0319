"""Prediction targets and exact conversions between them, for x_t = alpha x0 + sigma eps (the formulas;
`predictions` binds them to a process, one class per prediction type).

All functions take alpha, sigma (and for flow velocity their time derivatives) already broadcast
against x_t; nothing here knows which process produced them.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def eps_from_x0(xt: Tensor, x0: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """eps = (x_t - alpha x0) / sigma (Ho et al. 2020, eq. 4 solved for eps)."""
    return (xt - alpha * x0) / sigma


def x0_from_eps(xt: Tensor, eps: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """x0 = (x_t - sigma eps) / alpha (Ho et al. 2020, eq. 15)."""
    return (xt - sigma * eps) / alpha


def v_from_x0_eps(x0: Tensor, eps: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """v = alpha eps - sigma x0 (Salimans & Ho 2022, sec. 4)."""
    return alpha * eps - sigma * x0


def x0_from_v(xt: Tensor, v: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """x0 = (alpha x_t - sigma v) / (alpha^2 + sigma^2); = alpha x_t - sigma v for VP (Salimans & Ho 2022)."""
    return (alpha * xt - sigma * v) / (alpha**2 + sigma**2)


def score_from_eps(eps: Tensor, sigma: Tensor) -> Tensor:
    """grad log p(x_t) = -eps / sigma (Tweedie; Song et al. 2021, eq. 7 target)."""
    return -eps / sigma


def x0_from_score(xt: Tensor, score: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """Tweedie's formula: E[x0 | x_t] = (x_t + sigma^2 score) / alpha (Efron 2011)."""
    return (xt + sigma**2 * score) / alpha


def velocity_from_x0_eps(x0: Tensor, eps: Tensor, d_alpha: Tensor, d_sigma: Tensor) -> Tensor:
    """u = dx_t/dt = alpha'(t) x0 + sigma'(t) eps; = eps - x0 for rectified flow (Liu et al. 2023)."""
    return d_alpha * x0 + d_sigma * eps


def x0_from_velocity(xt: Tensor, u: Tensor, alpha: Tensor, sigma: Tensor,
                     d_alpha: Tensor, d_sigma: Tensor) -> Tensor:
    """Solve [alpha sigma; alpha' sigma'] [x0; eps] = [x_t; u] for x0."""
    return (d_sigma * xt - sigma * u) / (alpha * d_sigma - sigma * d_alpha)


def edm_scalings(sigma: Tensor, sigma_data: float = 0.5) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """c_skip, c_out, c_in, c_noise (Karras et al. 2022, Table 1, "Ours")."""
    s2, sd2 = sigma**2, sigma_data**2
    c_skip = sd2 / (s2 + sd2)
    c_out = sigma * sigma_data / torch.sqrt(s2 + sd2)
    c_in = 1 / torch.sqrt(s2 + sd2)
    c_noise = torch.log(sigma) / 4
    return c_skip, c_out, c_in, c_noise
