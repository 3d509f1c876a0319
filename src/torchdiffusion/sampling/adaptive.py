"""An adaptive embedded Runge-Kutta solver of the probability-flow ODE in t = log sigma: dx/dt = x - D(x, e^t)."""

from __future__ import annotations

import math
from typing import Any

import torch

from ..denoiser import sigma_batch
from .common import Callback, check_sigmas, report
from .dopri import B4, B5, A, C, dopri5  # noqa: F401  (the tableau, re-exported)
from .budget import budget_grid
from .dpmpp import sample_dpmpp_2m
from .method import Method

Tensor = torch.Tensor


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
    calls = 0

    def f(tt: float, y: Tensor) -> Tensor:  # dx/dt = x - D(x, e^t)
        nonlocal calls
        calls += 1
        return y - denoiser(y, sigma_batch(math.exp(tt), y), **cond)

    def on_step(i: int, tt: float, tt_next: float, y: Tensor, dy: Tensor) -> None:
        report(callback, i, y, math.exp(tt), math.exp(tt_next), y - dy)

    sol = dopri5(f, x, t, t_end, rtol=rtol, atol=atol, max_evals=max_nfe, on_step=on_step)
    x, accepted, rejected = sol.y, sol.accepted, sol.rejected
    if sol.t != t_end:  # the budget ran out before t_end
        x = _finish(denoiser, x, x - sol.dy, sol.t, t_end, to_zero, max_nfe - calls, cond)
        calls = max_nfe
    elif to_zero:
        x = x - sol.dy  # D(x, sigma_min), known from the last stage
    if stats is not None:
        stats.update(nfe=calls, accepted=accepted, rejected=rejected)
    return x


def _finish(denoiser: Any, x: Tensor, x0: Tensor, t: float, t_end: float, to_zero: bool, left: int,
            cond: dict[str, Any]) -> Tensor:
    """The rest of the way from sigma = e^t with `left` evaluations: DPM-Solver++(2M), or one step on the known D.

    To sigma = 0 that is 2M on the grid `sample` gives it for left + 1 calls from e^t (knee and tail included), its
    first call being the known D: a log-uniform grid down to sigma_min would spend a small budget on decades of sigma
    below the data's scale, and its error would not fall with the budget (2 calls from sigma 1e4 on a flow gave the
    1-call answer again)."""
    if left == 0:
        return x0 if to_zero else x0 + math.exp(t_end - t) * (x - x0)
    if to_zero:  # D(x, e^t) is known: 2M's first call is free, so its grid is that of left + 1 calls
        grid = budget_grid(denoiser, "dpmpp_2m", left + 1, sigma_min=math.exp(t_end), sigma_max=math.exp(t))
        known = [x0]

        def reuse_first(y: Tensor, sigma: Tensor, **c: Any) -> Tensor:
            return known.pop() if known else denoiser(y, sigma, **c)

        return sample_dpmpp_2m(reuse_first, x, grid, **cond)
    m = left  # 2M spends one evaluation per interval
    rest = torch.exp(torch.linspace(t, t_end, m + 1, dtype=torch.float64))
    return sample_dpmpp_2m(denoiser, x, rest, **cond)


DOPRI5 = Method(sample_dopri5, "ODE", 5, None)
