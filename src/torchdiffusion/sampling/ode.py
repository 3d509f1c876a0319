"""Classical one-step solvers of the probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma, stepping in sigma.

A step that ends at sigma = 0 is the Euler step, which lands exactly on D(x, sigma) (the derivative is singular at 0).
Updates are written as few whole-tensor passes (lerp, add with alpha): the Euler step x + (s' - s)(x - D)/s is
lerp(D, x, s'/s).
"""

from __future__ import annotations

from typing import Any

import torch

from ..denoiser import sigma_batch
from .common import MAX_STEP_RATIO, Callback, check_sigmas, first_order, report, to_d
from .method import Method

Tensor = torch.Tensor


@torch.no_grad()
def sample_euler(denoiser: Any, x: Tensor, sigmas: Tensor, *, generator: torch.Generator | None = None,
                 callback: Callback | None = None, **cond: Any) -> Tensor:
    """Euler's method on dx/dsigma = (x - D) / sigma (Karras et al. 2022, eq. 3; Alg. 1 without line 7's correction)."""
    sigmas = check_sigmas(x, sigmas).tolist()
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        x0 = denoiser(x, sigma_batch(s, x), **cond)
        report(callback, i, x, s, s_next, x0)
        x = torch.lerp(x0, x, s_next / s)
    return x


@torch.no_grad()
def sample_heun(denoiser: Any, x: Tensor, sigmas: Tensor, *, generator: torch.Generator | None = None,
                callback: Callback | None = None, max_ratio: float = MAX_STEP_RATIO, **cond: Any) -> Tensor:
    """Heun's 2nd-order method (Karras et al. 2022, Alg. 1); the step to sigma = 0, and one with sigma / sigma_next
    above max_ratio, is Euler's (`common.first_order`)."""
    sigmas = check_sigmas(x, sigmas).tolist()
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        x0 = denoiser(x, sigma_batch(s, x), **cond)
        report(callback, i, x, s, s_next, x0)
        if first_order(s, s_next, max_ratio):
            x = torch.lerp(x0, x, s_next / s)
            continue
        h = s_next - s
        sd = x - x0  # s * d
        x_euler = torch.add(x, sd, alpha=h / s)
        sd_next = x_euler - denoiser(x_euler, sigma_batch(s_next, x), **cond)  # s' * d'
        x = torch.add(x, sd, alpha=0.5 * h / s).add_(sd_next, alpha=0.5 * h / s_next)  # x + h (d + d') / 2
    return x


@torch.no_grad()
def sample_rk4(denoiser: Any, x: Tensor, sigmas: Tensor, *, generator: torch.Generator | None = None,
               callback: Callback | None = None, max_ratio: float = MAX_STEP_RATIO, **cond: Any) -> Tensor:
    """Classical 4th-order Runge-Kutta (Kutta 1901; Hairer et al., Solving ODEs I, Table II.1.1) in sigma; the step
    to sigma = 0, and one with sigma / sigma_next above max_ratio, is Euler's (`common.first_order`)."""
    sigmas = check_sigmas(x, sigmas).tolist()

    def f(y: Tensor, s: float) -> Tensor:
        return to_d(y, s, denoiser(y, sigma_batch(s, y), **cond))

    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        x0 = denoiser(x, sigma_batch(s, x), **cond)
        report(callback, i, x, s, s_next, x0)
        if first_order(s, s_next, max_ratio):
            x = torch.lerp(x0, x, s_next / s)
            continue
        h = s_next - s
        k1 = to_d(x, s, x0)
        k2 = f(x + 0.5 * h * k1, s + 0.5 * h)
        k3 = f(x + 0.5 * h * k2, s + 0.5 * h)
        k4 = f(x + h * k3, s_next)
        x = x + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


EULER = Method(sample_euler, "ODE", 1, 1)
HEUN = Method(sample_heun, "ODE", 2, 2, final_evals=1, long_steps=True)
RK4 = Method(sample_rk4, "ODE", 4, 4, final_evals=1, long_steps=True)
