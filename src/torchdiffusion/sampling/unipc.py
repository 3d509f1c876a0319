"""UniPC (Zhao et al. 2023): a multistep predictor UniP and a corrector UniC that reuses the next step's evaluation.

Data prediction in VE coordinates (alpha = 1, lambda = -log sigma, h = log(s/s')). Both updates have the form
x' = (s'/s) x + I_0 D_i + sum_m c_m (D_m - D_i), with D_m taken at lambda_i + r_m h; weights c_m that reproduce
the exact integrals, sum_m c_m (r_m h)^k / k! = I_k for k = 1..p, are UniPC's R_p a_p = g_p / B(h) with
c_m = -B(h) a_m / r_m (B cancels). A single node has no system: the "bh2" choice B(h) = e^h - 1 (in -h here)
with a_1 = 1/2 gives c_1 = I_0 / (2 r_1).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..denoiser import sigma_batch
from .common import Callback, add_scaled, check_sigmas, exp_integrals, report
from .method import Method

Tensor = torch.Tensor


def solve_small(A: list[list[float]], b: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting for the tiny (p <= 4) systems of multistep weights."""
    n = len(b)
    M = [row[:] + [bi] for row, bi in zip(A, b)]
    for col in range(n):
        piv = max(range(col, n), key=lambda r: abs(M[r][col]))
        M[col], M[piv] = M[piv], M[col]
        for r in range(col + 1, n):
            f = M[r][col] / M[col][col]
            M[r] = [a - f * c for a, c in zip(M[r], M[col])]
    out = [0.0] * n
    for r in range(n - 1, -1, -1):
        out[r] = (M[r][n] - sum(M[r][c] * out[c] for c in range(r + 1, n))) / M[r][r]
    return out


def uni_weights(rs: list[float], h: float, I: list[float]) -> list[float]:
    """c_m with sum_m c_m (r_m h)^k / k! = I_k, k = 1..len(rs); a single node uses the bh2 rule c = I_0 / (2 r)."""
    if len(rs) == 1:  # a_1 = 1/2 with B(h) = e^h - 1 (Zhao et al. 2023, Sec. 3.3 and App. C's "bh2")
        return [I[0] / (2 * rs[0])]
    p = len(rs)
    A = [[(r * h) ** k / math.factorial(k) for r in rs] for k in range(1, p + 1)]
    return solve_small(A, I[1:p + 1])


def _plus(base: Tensor, x0: Tensor, cs: list[float], x0s: list[Tensor]) -> Tensor:
    """base + sum_m c_m (D_m - D_i)."""
    return add_scaled(base, [-sum(cs)] + cs, [x0] + x0s)


def final_denoise(points: list[tuple[float, Tensor]]) -> Tensor:
    """x(0) from D at the last grid levels (sigma, D), most recent first: along a probability-flow path of a smooth
    density D(x(sigma), sigma) = x(0) + O(sigma^2) (Tweedie, D = x + sigma^2 grad log p, and dx/dsigma = -sigma
    grad log p), so the D's are extrapolated to sigma = 0 by the Lagrange polynomial in sigma^2 through them
    (Richardson); one point is D itself, the usual last step, first order where the last level is not small."""
    u = [s * s for s, _ in points]
    weights = []
    for j, uj in enumerate(u):  # Lagrange basis at u = 0
        w = 1.0
        for k, uk in enumerate(u):
            if k != j:
                w *= uk / (uk - uj)
        weights.append(w)
    return add_scaled(torch.zeros_like(points[0][1]), weights, [d for _, d in points])


@torch.no_grad()
def sample_unipc(denoiser: Any, x: Tensor, sigmas: Tensor, *, generator: torch.Generator | None = None,
                 callback: Callback | None = None, order: int = 2, corrector: bool = True, final_order: int = 1,
                 **cond: Any) -> Tensor:
    """UniPC-p with B(h) = e^h - 1 ("bh2"), data prediction (Zhao et al. 2023, Alg. 2 with UniP-p and UniC-p); the
    last step is not corrected (it would need one more evaluation); a step to sigma = 0 lands on D extrapolated to
    sigma = 0 through the last final_order D's (`final_denoise`; 1: D itself)."""
    if order not in (1, 2, 3):
        raise ValueError(f"UniPC order must be 1, 2 or 3, got {order}")
    if final_order not in (1, 2, 3):
        raise ValueError(f"UniPC final_order must be 1, 2 or 3, got {final_order}")
    sigmas = check_sigmas(x, sigmas).tolist()
    n = len(sigmas) - 1
    hist: list[tuple[float, Tensor]] = []  # (lambda, D) of earlier grid points, most recent last
    x0 = denoiser(x, sigma_batch(sigmas[0], x), **cond)
    for i in range(n):
        s, s_next = sigmas[i], sigmas[i + 1]
        report(callback, i, x, s, s_next, x0)
        if s_next == 0:
            x = final_denoise([(s, x0)] + [(math.exp(-lam_m), x0_m) for lam_m, x0_m in hist[::-1]][:final_order - 1])
            break
        lam, h = -math.log(s), math.log(s / s_next)
        past = hist[-(order - 1):][::-1] if order > 1 else []  # most recent first
        rs = [(lam_m - lam) / h for lam_m, _ in past]
        I = exp_integrals(h, len(rs) + 2)
        base = torch.lerp(x0, x, s_next / s)  # (s'/s) x + I_0 D_i
        x_pred = _plus(base, x0, uni_weights(rs, h, I), [x0_m for _, x0_m in past]) if rs else base
        if i == n - 1:
            x = x_pred
            break
        x0_next = denoiser(x_pred, sigma_batch(s_next, x), **cond)
        if corrector:
            x = _plus(base, x0, uni_weights(rs + [1.0], h, I), [x0_m for _, x0_m in past] + [x0_next])
        else:
            x = x_pred
        hist = (hist + [(lam, x0)])[-2:]
        x0 = x0_next
    return x


ORDER_3_FROM = 10  # steps from which the default rule runs UniPC-3 (docs/samplers.md, "Re-choosing the rule on 16
# tuning problems")


FINAL_ORDER = 3  # D's the default rule extrapolates to sigma = 0 in the last step (docs/samplers.md, "The step to
# sigma = 0")


def rule_options(steps: int) -> dict[str, Any]:
    """The default rule's UniPC: order 3 (UniP-3 with UniC-3) on grids of ORDER_3_FROM steps or more, else the
    function's default order 2, whose two-point extrapolation is the safer one over a few long steps; the last step
    extrapolates FINAL_ORDER D's to sigma = 0 (`final_denoise`)."""
    return {"order": 3, "final_order": FINAL_ORDER} if steps >= ORDER_3_FROM else {"final_order": FINAL_ORDER}


UNIPC = Method(sample_unipc, "ODE", 3, 1, grid="exponential", rule_options=rule_options)
