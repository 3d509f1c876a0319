"""An adaptive embedded Runge-Kutta solver of the probability-flow ODE in t = log sigma: dx/dt = x - D(x, e^t)."""

from __future__ import annotations

import math
from typing import Any

import torch

from .common import Callback, add_scaled, batch_sigma, check_sigmas, report
from .dpmpp import sample_dpmpp_2m

Tensor = torch.Tensor

# Dormand & Prince (1980), RK5(4)7FM: nodes c, stages A (row i: a_i1..a_i,i-1), 5th-order weights B5 (= the last row
# of A, so the last stage is the next step's first: FSAL) and the embedded 4th-order weights B4.
C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
A = ((),
     (1 / 5,),
     (3 / 40, 9 / 40),
     (44 / 45, -56 / 15, 32 / 9),
     (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
     (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
     (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84))
B5 = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)


@torch.no_grad()
def sample_dopri5(denoiser: Any, x: Tensor, sigmas: Tensor, *, generator: torch.Generator | None = None,
                  callback: Callback | None = None, rtol: float = 1e-4, atol: float = 1e-4,
                  max_nfe: int | None = None, stats: dict[str, Any] | None = None, **cond: Any) -> Tensor:
    """Dormand-Prince 5(4) with step-size control (Dormand & Prince 1980; Hairer et al., Solving ODEs I, II.4-5)
    from sigmas[0] to the last positive sigma in log sigma; a final 0 in the grid is the free step x = D (FSAL).

    Only the grid's endpoints are used. With `max_nfe`, once a full step (6 evaluations) no longer fits, the rest of
    the way is DPM-Solver++(2M) on a log-uniform grid with the evaluations left. `stats`, if given, receives nfe and
    the accepted and rejected step counts.
    """
    sigmas = check_sigmas(x, sigmas).tolist()
    to_zero = sigmas[-1] == 0
    t, t_end = math.log(sigmas[0]), math.log(sigmas[-2] if to_zero else sigmas[-1])
    calls, accepted, rejected = 0, 0, 0

    def f(y: Tensor, tt: float) -> Tensor:  # dx/dt = x - D(x, e^t)
        nonlocal calls
        calls += 1
        return y - denoiser(y, batch_sigma(y, math.exp(tt)), **cond)

    def rms(v: Tensor) -> float:
        return float(v.pow(2).mean().sqrt())

    k1 = f(x, t)
    d0, d1 = rms(x / (atol + rtol * x.abs())), rms(k1 / (atol + rtol * x.abs()))
    h = -min(t - t_end, 0.01 * d0 / d1 if min(d0, d1) > 1e-5 else 1e-3)  # Hairer's first guess, negative
    while t - t_end > 1e-12 * max(1.0, abs(t_end)):
        if max_nfe is not None and calls + 6 > max_nfe:
            x = _finish(denoiser, x, x - k1, t, t_end, to_zero, max_nfe - calls, cond)
            calls = max_nfe
            break
        h = max(h, t_end - t)
        ks = [k1]
        for i in range(1, 7):
            ks.append(f(add_scaled(x, [h * a for a in A[i]], ks), t + C[i] * h))
        x5 = add_scaled(x, [h * b for b in B5], ks)
        err_est = add_scaled(torch.zeros_like(x), [h * (b5 - b4) for b5, b4 in zip(B5, B4)], ks)
        err = rms(err_est / (atol + rtol * torch.maximum(x.abs(), x5.abs())))
        if err <= 1.0:
            report(callback, accepted, x, math.exp(t), math.exp(t + h), x - k1)
            t, x, k1 = t + h, x5, ks[6]
            accepted += 1
            h *= min(10.0, 0.9 * err ** -0.2) if err > 0 else 10.0
        else:
            rejected += 1
            h *= max(0.2, 0.9 * err ** -0.2)
    else:
        if to_zero:
            x = x - k1  # D(x, sigma_min), known from the last stage
    if stats is not None:
        stats.update(nfe=calls, accepted=accepted, rejected=rejected)
    return x


def _finish(denoiser: Any, x: Tensor, x0: Tensor, t: float, t_end: float, to_zero: bool, left: int,
            cond: dict[str, Any]) -> Tensor:
    """The rest of the way from sigma = e^t with `left` evaluations: DPM-Solver++(2M), or one step on the known D."""
    if left == 0:
        return x0 if to_zero else x0 + math.exp(t_end - t) * (x - x0)
    m = left - 1 if to_zero else left  # 2M spends one evaluation per interval, the last one to 0 included
    rest = torch.exp(torch.linspace(t, t_end, m + 1, dtype=torch.float64)) if m > 0 else torch.tensor([math.exp(t)])
    if to_zero:
        rest = torch.cat([rest, rest.new_zeros(1)])
    return sample_dpmpp_2m(denoiser, x, rest, **cond)
