"""Dormand-Prince 5(4) with step-size control for a generic ODE dy/dt = f(t, y) on one tensor state.

Shared by the adaptive sampler (the probability-flow ODE in log sigma) and the likelihood solver (the same ODE
augmented with the divergence integral). Integrates forwards or backwards in t.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .common import add_scaled

Tensor = torch.Tensor
Field = Callable[[float, Tensor], Tensor]
Norm = Callable[[Tensor], float]
StepHook = Callable[[int, float, float, Tensor, Tensor], None]

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
STAGES = 6  # new evaluations per attempted step (the first is the previous step's last)


@dataclass
class ODEResult:
    """Where the solve stopped (t == t1 exactly unless `max_evals` ran out), the state there and f at it (FSAL)."""

    t: float
    y: Tensor
    dy: Tensor
    nfe: int
    accepted: int
    rejected: int


def rms(v: Tensor) -> float:
    """Root mean square over the whole tensor, the default error norm (Hairer et al., Solving ODEs I, eq. II.4.11)."""
    return float(v.pow(2).mean().sqrt())


def dopri5(f: Field, y: Tensor, t0: float, t1: float, *, rtol: float, atol: float, max_evals: int | None = None,
           norm: Norm = rms, on_step: StepHook | None = None) -> ODEResult:
    """Integrate y' = f(t, y) from t0 to t1 by Dormand-Prince 5(4) (Dormand & Prince 1980; Hairer et al., Solving
    ODEs I, II.4-5), local extrapolation, error norm(err / (atol + rtol max(|y|, |y_new|))) <= 1.

    `max_evals` stops before an attempted step would exceed it. `on_step(i, t, t_next, y, f(t, y))` sees each
    accepted step's start.
    """
    direction = 1.0 if t1 >= t0 else -1.0
    t, nfe, accepted, rejected = t0, 1, 0, 0
    k1 = f(t, y)
    scale = atol + rtol * y.abs()
    d0, d1 = norm(y / scale), norm(k1 / scale)
    h = min(abs(t1 - t0), 0.01 * d0 / d1 if min(d0, d1) > 1e-5 else 1e-3)  # Hairer's first guess, II.4 (a)-(c)
    while direction * (t1 - t) > 1e-12 * max(1.0, abs(t1)):
        if max_evals is not None and nfe + STAGES > max_evals:
            break
        last = h >= abs(t1 - t)
        h = min(h, abs(t1 - t))
        hs = direction * h
        ks = [k1]
        for i in range(1, 7):
            ks.append(f(t + C[i] * hs, add_scaled(y, [hs * a for a in A[i]], ks)))
        nfe += STAGES
        y5 = add_scaled(y, [hs * b for b in B5], ks)
        err_est = add_scaled(torch.zeros_like(y), [hs * (b5 - b4) for b5, b4 in zip(B5, B4)], ks)
        err = norm(err_est / (atol + rtol * torch.maximum(y.abs(), y5.abs())))
        if err <= 1.0:
            if on_step is not None:
                on_step(accepted, t, t + hs, y, k1)
            t, y, k1 = t1 if last else t + hs, y5, ks[6]
            accepted += 1
            h *= min(10.0, 0.9 * err ** -0.2) if err > 0 else 10.0
        else:
            rejected += 1
            h *= max(0.2, 0.9 * err ** -0.2)
    return ODEResult(t, y, k1, nfe, accepted, rejected)
