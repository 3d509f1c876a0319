"""DPM-Solver-1/2/3, single-step, noise-prediction form (Lu et al. 2022, "DPM-Solver", Algorithms 1-2).

In VE coordinates alpha = 1 and lambda = -log sigma, so a step s -> s' has h = log(s / s'), sigma' (e^h - 1) = s - s'
and an intermediate level at lambda + r h is sigma_r = s^(1 - r) s'^r. eps_hat = (x - D(x, sigma)) / sigma.
A step that ends at sigma = 0 (h infinite) is DPM-Solver-1's, which lands on D(x, sigma).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch

from ..denoiser import sigma_batch
from .common import MAX_STEP_RATIO, Callback, check_sigmas, first_order, report
from .method import Method, single_step_cost

Tensor = torch.Tensor


def _eps(denoiser: Any, x: Tensor, s: float, cond: dict[str, Any]) -> Tensor:
    return (x - denoiser(x, sigma_batch(s, x), **cond)) / s


@torch.no_grad()
def sample_dpm_solver(denoiser: Any, x: Tensor, sigmas: Tensor, *, generator: torch.Generator | None = None,
                      callback: Callback | None = None, order: int = 2, r1: float | None = None,
                      r2: float | None = None, max_ratio: float = MAX_STEP_RATIO, **cond: Any) -> Tensor:
    """DPM-Solver-k (Lu et al. 2022, eq. 3.7 for k = 1, Alg. 1 for k = 2 with r1 = 1/2, Alg. 2 for k = 3 with
    r1 = 1/3, r2 = 2/3); a step with sigma / sigma_next above max_ratio is DPM-Solver-1's (`common.first_order`)."""
    if order not in (1, 2, 3):
        raise ValueError(f"DPM-Solver order must be 1, 2 or 3, got {order}")
    r1 = (0.5 if order == 2 else 1 / 3) if r1 is None else r1
    r2 = 2 / 3 if r2 is None else r2
    sigmas = check_sigmas(x, sigmas).tolist()
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        x0 = denoiser(x, sigma_batch(s, x), **cond)
        report(callback, i, x, s, s_next, x0)
        eps0 = (x - x0) / s
        if order == 1 or first_order(s, s_next, max_ratio):
            x = torch.lerp(x0, x, s_next / s)  # x - (s - s') eps0, without its round-off at a long step
            continue
        h = math.log(s / s_next)
        s1 = s * math.exp(-r1 * h)
        u1 = x - (s - s1) * eps0
        D1 = _eps(denoiser, u1, s1, cond) - eps0
        if order == 2:
            x = x - (s - s_next) * eps0 - (s - s_next) / (2 * r1) * D1
            continue
        s2 = s * math.exp(-r2 * h)
        u2 = x - (s - s2) * eps0 - (r2 / r1) * ((s - s2) / (r2 * h) - s2) * D1
        D2 = _eps(denoiser, u2, s2, cond) - eps0
        x = x - (s - s_next) * eps0 - ((s - s_next) / h - s_next) / r2 * D2
    return x


# the long-step rule matters for DPM-Solver-1 where an `order` option raises its order
DPM_SOLVER_1 = Method(partial(sample_dpm_solver, order=1), "ODE", 1, 1, cost=single_step_cost(1), long_steps=True)
DPM_SOLVER_2 = Method(partial(sample_dpm_solver, order=2), "ODE", 2, 2, 1, cost=single_step_cost(2), long_steps=True)
DPM_SOLVER_3 = Method(partial(sample_dpm_solver, order=3), "ODE", 3, 3, 1, cost=single_step_cost(3), long_steps=True)
