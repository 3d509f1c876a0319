"""Kernel Inception Distance: unbiased MMD^2 with a cubic polynomial kernel on features (Binkowski et al. 2018)."""

from __future__ import annotations

import math

import torch

from .distances import mmd2_unbiased

Tensor = torch.Tensor


def polynomial_kernel(a: Tensor, b: Tensor, degree: int = 3, coef0: float = 1.0) -> Tensor:
    """k(x, y) = (x.y / d + coef0)^degree (Binkowski et al. 2018, sec. 2.3)."""
    return (a @ b.T / a.shape[1] + coef0) ** degree


def kid(real: Tensor, fake: Tensor, *, subsets: int = 100, subset_size: int = 1000,
        generator: torch.Generator | None = None) -> dict[str, float]:
    """KID of (N, d) and (M, d) features: mean, std and standard error (std / sqrt(subsets)) of the unbiased MMD^2 over
    `subsets` random subsets of min(subset_size, N, M) rows each, drawn without replacement within a subset
    (Binkowski et al. 2018, sec. 2.3 and App. D)."""
    real, fake = real.flatten(1).double(), fake.flatten(1).double()
    m = min(subset_size, real.shape[0], fake.shape[0])
    values = []
    for _ in range(subsets):
        ir = torch.randperm(real.shape[0], generator=generator)[:m].to(real.device)
        jf = torch.randperm(fake.shape[0], generator=generator)[:m].to(fake.device)
        values.append(mmd2_unbiased(real[ir], fake[jf], polynomial_kernel))
    v = torch.tensor(values, dtype=torch.float64)
    std = float(v.std()) if subsets > 1 else float("nan")
    return {"mean": float(v.mean()), "std": std, "se": std / math.sqrt(subsets)}
