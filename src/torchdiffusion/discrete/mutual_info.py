"""D3PM's mutual-information schedule for any kernel: beta_t such that I(x_t; x0) = (1 - t / T) H(x0).

Austin et al. 2021 (sec. 4.1, "noise schedules") choose beta_t so that the mutual information between x_t and x0
falls linearly to zero, measured under the data's marginal p(x0) of one token. For the absorbing kernel this has the
closed form beta_t = 1 / (T - t + 1) (schedules.mutual_info_betas, independent of p(x0)); for the other kernels it
needs a numerical solve against p(x0), done here one step at a time: given Qbar_(t-1), bisect beta_t in
[0, beta_max] until I(x0; x_t) under Qbar_(t-1) Q(beta_t) meets its target. One more step of any kernel cannot raise
the information (data processing), and a larger beta mixes more, so the information is decreasing in beta_t. A kernel
that cannot reach a target within one step of beta_max (the discretised Gaussian cannot mix in one step) takes
beta_max there; `mutual_information` reports what was reached.
"""

from __future__ import annotations

from typing import Callable

import torch

from .process import safe_log

Tensor = torch.Tensor


def entropy(p: Tensor) -> float:
    """H(p) in nats of a (K,) distribution."""
    p = p.double()
    return float(-(p * safe_log(p).clamp(min=-1e4)).sum())


def mutual_information(p0: Tensor, Qbar: Tensor) -> float:
    """I(x0; x_t) in nats for x0 ~ p0 (K,) and x_t | x0 ~ Qbar[x0] (K, K) rows: H(x_t) - H(x_t | x0)."""
    p0, Qbar = p0.double(), Qbar.double()
    joint = p0[:, None] * Qbar  # (K, K) p(x0, x_t)
    pt = joint.sum(0)
    terms = joint * (safe_log(Qbar) - safe_log(pt)[None, :]).clamp(min=-1e4)
    return float(torch.where(joint > 0, terms, torch.zeros_like(terms)).sum())


def mutual_info_betas_for(step_matrix: Callable[[float], Tensor], p0: Tensor, T: int, *, beta_max: float = 1.0,
                          iters: int = 50) -> Tensor:
    """(T,) float64 beta_1..beta_T of the mutual-information schedule of the kernel beta -> Q(beta) (K, K) under the
    data marginal p0 (K,): I(x0; x_t) = (1 - t / T) H(x0) at every step it can reach (Austin et al. 2021, sec. 4.1)."""
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    p0 = p0.double() / p0.double().sum()
    K, H = len(p0), entropy(p0)
    Qbar = torch.eye(K, dtype=torch.float64)
    betas = []
    for t in range(1, T + 1):
        target = (1 - t / T) * H
        lo, hi = 0.0, float(beta_max)
        if mutual_information(p0, Qbar @ step_matrix(hi)) <= target:
            for _ in range(iters):  # I(beta) decreasing: keep I(lo) > target >= I(hi)
                mid = 0.5 * (lo + hi)
                if mutual_information(p0, Qbar @ step_matrix(mid)) > target:
                    lo = mid
                else:
                    hi = mid
        betas.append(hi)
        Qbar = Qbar @ step_matrix(hi)
    return torch.tensor(betas, dtype=torch.float64)


def kernel_betas(schedule: str, T: int, num_classes: int, step_matrix: Callable[[float], Tensor],
                 marginal: Tensor | None = None, **options: float) -> Tensor:
    """(T + 1,) table [0, beta_1..beta_T] of a non-absorbing kernel: "mutual_info" solved against `marginal` (the
    data's p(x0) of one token; None: uniform), any other name from schedules.BETA_SCHEDULES."""
    from .schedules import d3pm_betas

    if schedule != "mutual_info":
        if marginal is not None:
            raise ValueError(f"a data marginal only shapes the mutual_info schedule, not {schedule!r}")
        return d3pm_betas(schedule, T, **options)
    if options:
        raise ValueError(f"the mutual_info schedule takes no options, got {sorted(options)}")
    p0 = torch.full((num_classes,), 1.0 / num_classes, dtype=torch.float64) if marginal is None else \
        torch.as_tensor(marginal, dtype=torch.float64)
    if p0.shape != (num_classes,) or bool((p0 < 0).any()) or not float(p0.sum()) > 0:
        raise ValueError(f"the data marginal must be {num_classes} non-negative numbers with a positive sum, got "
                         f"{p0.tolist()}")
    betas = mutual_info_betas_for(step_matrix, p0, T)
    return torch.cat([torch.zeros(1, dtype=torch.float64), betas])
