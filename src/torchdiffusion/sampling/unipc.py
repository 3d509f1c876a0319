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


@torch.no_grad()
def sample_unipc(denoiser: Any, x: Tensor, sigmas: Tensor, *, generator: torch.Generator | None = None,
                 callback: Callback | None = None, order: int = 2, corrector: bool = True, **cond: Any) -> Tensor:
    """UniPC-p with B(h) = e^h - 1 ("bh2"), data prediction (Zhao et al. 2023, Alg. 2 with UniP-p and UniC-p); the
    last step is not corrected (it would need one more evaluation); a step to sigma = 0 lands on D."""
    if order not in (1, 2, 3):
        raise ValueError(f"UniPC order must be 1, 2 or 3, got {order}")
    sigmas = check_sigmas(x, sigmas).tolist()
    n = len(sigmas) - 1
    hist: list[tuple[float, Tensor]] = []  # (lambda, D) of earlier grid points, most recent last
    x0 = denoiser(x, sigma_batch(sigmas[0], x), **cond)
    for i in range(n):
        s, s_next = sigmas[i], sigmas[i + 1]
        report(callback, i, x, s, s_next, x0)
        if s_next == 0:
            x = x0
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


def rule_options(steps: int) -> dict[str, Any]:
    """The default rule's UniPC: order 3 (UniP-3 with UniC-3) on grids of ORDER_3_FROM steps or more, else the
    function's default order 2, whose two-point extrapolation is the safer one over a few long steps."""
    return {"order": 3} if steps >= ORDER_3_FROM else {}


UNIPC = Method(sample_unipc, "ODE", 3, 1, grid="exponential", rule_options=rule_options)
