"""Frechet distance between Gaussians fitted to features (Heusel et al. 2017, eq. 6)."""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def gaussian_stats(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and unbiased covariance of (N, d) features, in float64."""
    f = features.double()
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must have shape (N >= 2, d), got {tuple(features.shape)}")
    return f.mean(0), torch.cov(f.T)


def _sqrtm_psd(a: Tensor) -> Tensor:
    w, v = torch.linalg.eigh((a + a.T) / 2)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def frechet_distance(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> float:
    """||mu1 - mu2||^2 + Tr(C1 + C2 - 2 (C1^1/2 C2 C1^1/2)^1/2), via symmetric eigendecompositions."""
    s1 = _sqrtm_psd(cov1.double())
    m = s1 @ cov2.double() @ s1
    tr_sqrt = torch.linalg.eigvalsh((m + m.T) / 2).clamp(min=0).sqrt().sum()
    d = (mu1.double() - mu2.double()).pow(2).sum() + torch.trace(cov1.double()) + torch.trace(cov2.double()) \
        - 2 * tr_sqrt
    return float(d.clamp(min=0))


def fid_from_features(a: Tensor, b: Tensor) -> float:
    """FID between two feature sets (N, d) and (M, d)."""
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))
