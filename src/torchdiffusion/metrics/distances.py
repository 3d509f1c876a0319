"""Sample-based distances for low-dimensional data: sliced Wasserstein, unbiased MMD, log-likelihood under a known
density."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

Tensor = torch.Tensor
Kernel = Callable[[Tensor, Tensor], Tensor]


def wasserstein_1d(a: Tensor, b: Tensor, p: float = 2.0) -> Tensor:
    """W_p^p between empirical measures on the line along the last axis, (...,): int_0^1 |F_a^-1(u) - F_b^-1(u)|^p du,
    exact for the piecewise-constant quantile functions (Villani 2003, Thm. 2.18); sizes may differ."""
    a, b = a.sort(-1).values, b.sort(-1).values
    n, m = a.shape[-1], b.shape[-1]
    if n == m:
        return (a - b).abs().pow(p).mean(-1)
    u = torch.cat([torch.arange(1, n + 1, dtype=torch.float64) / n, torch.arange(1, m + 1, dtype=torch.float64) / m])
    u = u.unique()  # right ends of the intervals on which both quantile functions are constant
    du = torch.diff(u, prepend=u.new_zeros(1))
    mid = (u - du / 2).to(a.device)
    ia = (mid * n).floor().long().clamp(max=n - 1)
    ib = (mid * m).floor().long().clamp(max=m - 1)
    return ((a[..., ia] - b[..., ib]).abs().pow(p) * du.to(a)).sum(-1)


def sliced_wasserstein(x: Tensor, y: Tensor, *, projections: int = 128, p: float = 2.0,
                       generator: torch.Generator | None = None) -> float:
    """SW_p = (E_theta W_p^p(theta.x, theta.y))^(1/p), theta uniform on the sphere, by `projections` random directions
    and the exact 1-D distance of the projections (Rabin et al. 2011; Bonneel et al. 2015, eq. 4)."""
    x, y = x.flatten(1).double(), y.flatten(1).double()
    theta = torch.randn(projections, x.shape[1], generator=generator, dtype=torch.float64).to(x.device)
    theta = theta / theta.norm(dim=1, keepdim=True)
    return float(wasserstein_1d(theta @ x.T, theta @ y.T, p).mean() ** (1 / p))


def gaussian_kernel(bandwidths: float | Sequence[float] = 1.0) -> Kernel:
    """k(x, y) = sum_h exp(-||x - y||^2 / (2 h^2)) over the given bandwidths (a sum of characteristic kernels)."""
    hs = [bandwidths] if isinstance(bandwidths, (int, float)) else list(bandwidths)

    def k(a: Tensor, b: Tensor) -> Tensor:
        d2 = torch.cdist(a, b).pow(2)
        return sum(torch.exp(-d2 / (2 * h * h)) for h in hs)

    return k


def mmd2_unbiased(x: Tensor, y: Tensor, kernel: Kernel) -> float:
    """Unbiased MMD^2_u = mean_{i!=j} k(x_i, x_j) + mean_{i!=j} k(y_i, y_j) - 2 mean_{i,j} k(x_i, y_j)
    (Gretton et al. 2012, Lemma 6)."""
    x, y = x.flatten(1).double(), y.flatten(1).double()
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError("the unbiased MMD needs at least 2 samples in each set")
    kxx, kyy = kernel(x, x), kernel(y, y)
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(sxx + syy - 2 * kernel(x, y).mean())


def mmd_gaussian(x: Tensor, y: Tensor, *, bandwidths: float | Sequence[float] = 1.0) -> float:
    """Unbiased MMD^2 with the Gaussian kernel (Gretton et al. 2012, eq. 3); may be slightly negative."""
    return mmd2_unbiased(x, y, gaussian_kernel(bandwidths))


def log_likelihood_of_samples(samples: Tensor, log_prob: Callable[[Tensor], Tensor]) -> tuple[float, float]:
    """Mean log-density of samples under a known density (e.g. GaussianMixture.log_prob), and its standard error;
    for samples from the density itself the mean estimates minus its differential entropy."""
    lp = log_prob(samples).double()
    return float(lp.mean()), float(lp.std() / math.sqrt(lp.numel()))
