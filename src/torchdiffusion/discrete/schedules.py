"""Noise schedules of the categorical processes: per-step beta_t tables for D3PM and masking alpha(t) for MDLM/MD4.

A D3PM table has T + 1 entries with beta_0 = 0, so that index t is step t and Q_0 = I (t = 0 is data). A masking
schedule alpha(t) on t in [0, 1] is the probability that a token is still unmasked at time t: alpha(0) = 1,
alpha(1) = 0, decreasing.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..schedules import cosine_betas, linear_betas

Tensor = torch.Tensor


def mutual_info_betas(T: int) -> Tensor:
    """beta_t = 1 / (T - t + 1): the mutual-information schedule for absorbing kernels, where it makes the fraction of
    [MASK] tokens t / T linear in t (Austin et al. 2021, sec. 4.1; Sohl-Dickstein et al. 2015's Bernoulli schedule)."""
    t = torch.arange(1, T + 1, dtype=torch.float64)
    return 1.0 / (T - t + 1)


BETA_SCHEDULES: dict[str, Callable[..., Tensor]] = {
    "linear": linear_betas,  # Ho et al. 2020; D3PM's discretised Gaussian (Austin et al. 2021, sec. 4.2)
    "cosine": cosine_betas,  # Nichol & Dhariwal 2021 eq. 17; D3PM's uniform kernel (Austin et al. 2021, sec. 4.1)
    "mutual_info": mutual_info_betas,
}


def d3pm_betas(name: str, T: int, **options: float) -> Tensor:
    """(T + 1,) float64 table [0, beta_1, ..., beta_T] of the named schedule (options: beta_start, beta_end, s)."""
    if name not in BETA_SCHEDULES:
        raise ValueError(f"unknown beta schedule {name!r}; choose one of {', '.join(BETA_SCHEDULES)}")
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    betas = BETA_SCHEDULES[name](T, **options)
    return torch.cat([torch.zeros(1, dtype=torch.float64), betas.double()])


# ---------------------------------------------------------------- continuous-time masking schedules

def _linear(t: Tensor) -> tuple[Tensor, Tensor]:
    return 1.0 - t, -torch.ones_like(t)


def _cosine(t: Tensor) -> tuple[Tensor, Tensor]:
    a = 0.5 * math.pi * (1.0 - t)
    return 1.0 - torch.cos(a), -0.5 * math.pi * torch.sin(a)


MASKING_SCHEDULES: dict[str, Callable[[Tensor], tuple[Tensor, Tensor]]] = {
    "linear": _linear,  # alpha = 1 - t, bound weight 1 / t: MDLM's log-linear schedule (Sahoo et al. 2024)
    "cosine": _cosine,  # alpha = 1 - cos(pi/2 (1 - t)) (Shi et al. 2024, MD4's cosine schedule)
}


def masking_alpha(name: str, t: Tensor) -> tuple[Tensor, Tensor]:
    """(alpha(t), alpha'(t)) of the named masking schedule, in t's dtype (float64 recommended)."""
    if name not in MASKING_SCHEDULES:
        raise ValueError(f"unknown masking schedule {name!r}; choose one of {', '.join(MASKING_SCHEDULES)}")
    return MASKING_SCHEDULES[name](t)
