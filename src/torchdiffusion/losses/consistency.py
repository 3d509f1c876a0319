"""Consistency training without a teacher (`loss.kind: consistency`) with the improved techniques of iCT (Song &
Dhariwal 2023): pseudo-Huber distance, log-normal level sampling, a curriculum doubling the number of
discretisation levels, the weighting 1 / (s_{i+1} - s_i) and the stop-gradient target without EMA.

The model is a ModelDenoiser with prediction "consistency" (`predictions.ConsistencyPrecond`): f(x, sigma) =
c_skip x + c_out F, with f(x, sigma_min) = x; it is sampled by the multistep consistency sampler.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..model_denoiser import ModelDenoiser

Tensor = torch.Tensor
DISTANCES = ("l2", "pseudo_huber")  # what a distiller's `distance` may name


def pseudo_huber(a: Tensor, b: Tensor, c: float | None = None) -> Tensor:
    """sqrt(||a - b||^2 + c^2) - c per sample, c = 0.00054 sqrt(d) by default (Song & Dhariwal 2023, sec. 3.3)."""
    return pseudo_huber_of((a - b).pow(2).flatten(1).sum(1), a[0].numel(), c)


def pseudo_huber_of(sq: Tensor, d: int, c: float | None = None) -> Tensor:
    """`pseudo_huber` of per-sample squared distances sq (B,) between points of d dimensions."""
    c = 0.00054 * math.sqrt(d) if c is None else c
    return torch.sqrt(sq + c**2) - c


def karras_levels(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """n ascending levels sigma_1 = sigma_min .. sigma_n = sigma_max (Karras et al. 2022, eq. 5; Song et al. 2023)."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (lo + ramp * (hi - lo)) ** rho


def ict_num_levels(progress: float, s0: int = 10, s1: int = 1280) -> int:
    """N(k) = min(s0 2^floor(k / K'), s1) + 1 with K' = floor(K / (log2(s1 / s0) + 1)), at progress = k / K
    (Song & Dhariwal 2023, eq. 8, the exponential curriculum)."""
    stages = int(math.log2(s1 / s0)) + 1
    return min(s0 * 2 ** int(min(max(progress, 0.0), 1.0) * stages), s1) + 1


def ict_level_probs(levels: Tensor, p_mean: float = -1.1, p_std: float = 2.0) -> Tensor:
    """p(i) proportional to erf((ln s_{i+1} - P_mean) / (sqrt2 P_std)) - erf((ln s_i - P_mean) / (sqrt2 P_std)),
    i = 1 .. N-1: the discretised log-normal of iCT (Song & Dhariwal 2023, sec. 3.5)."""
    e = torch.erf((torch.log(levels) - p_mean) / (math.sqrt(2) * p_std))
    p = (e[1:] - e[:-1]).clamp(min=0)
    return p / p.sum()


def consistency_training_loss(model: ModelDenoiser, x0: Tensor, *, u: Tensor, eps: Tensor, progress: float,
                              **cond: Any) -> Tensor:
    """iCT's per-sample loss (Song & Dhariwal 2023, eq. 5 with sec. 3): for the level index i drawn by inverting
    the log-normal p(i) at the uniform u (B,), lambda(s_i) d(f(x0 + s_{i+1} z, s_{i+1}), sg f(x0 + s_i z, s_i))
    with lambda = 1 / (s_{i+1} - s_i) and d pseudo-Huber."""
    n = ict_num_levels(progress)
    levels = karras_levels(n, model.sigma_min, model.sigma_max)
    cdf = torch.cumsum(ict_level_probs(levels), 0)
    i = torch.searchsorted(cdf, u.double().cpu().clamp(0, 1 - 1e-12).contiguous()).clamp(max=n - 2)
    s, s_next = levels[i].to(x0.device), levels[i + 1].to(x0.device)
    shape = (-1,) + (1,) * (x0.ndim - 1)
    out = model(x0 + s_next.reshape(shape).to(x0.dtype) * eps, s_next, **cond)
    with torch.no_grad():  # the target: the same network at the lower level, no gradient (iCT drops the EMA)
        target = model(x0 + s.reshape(shape).to(x0.dtype) * eps, s, **cond)
    return pseudo_huber(out, target) / (s_next - s).to(out.dtype)


