"""Improved precision and recall: each set's manifold is the union of balls reaching every point's k-th nearest
neighbour within that set (Kynkaanniemi et al. 2019, eq. 1-3)."""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def knn_radii(features: Tensor, k: int = 3, chunk: int = 1024) -> Tensor:
    """Distance of each row to its k-th nearest other row, (N,), from chunked pairwise distances."""
    if features.shape[0] <= k:
        raise ValueError(f"need more than k={k} rows, got {features.shape[0]}")
    out = [torch.cdist(features[i:i + chunk], features).topk(k + 1, dim=1, largest=False).values[:, k]
           for i in range(0, features.shape[0], chunk)]  # column 0 is the row itself (distance 0)
    return torch.cat(out)


def coverage_fraction(queries: Tensor, support: Tensor, radii: Tensor, chunk: int = 1024) -> float:
    """Fraction of queries inside some ball B(support_j, radii_j) (Kynkaanniemi et al. 2019, eq. 1)."""
    inside = [(torch.cdist(queries[i:i + chunk], support) <= radii[None]).any(1)
              for i in range(0, queries.shape[0], chunk)]
    return float(torch.cat(inside).double().mean())


def precision_recall(real: Tensor, fake: Tensor, *, k: int = 3, chunk: int = 1024) -> dict[str, float]:
    """precision: fraction of fake samples on the real manifold; recall: fraction of real samples on the fake manifold
    (Kynkaanniemi et al. 2019, eq. 2-3)."""
    real, fake = real.flatten(1).double(), fake.flatten(1).double()
    precision = coverage_fraction(fake, real, knn_radii(real, k, chunk), chunk)
    recall = coverage_fraction(real, fake, knn_radii(fake, k, chunk), chunk)
    return {"precision": precision, "recall": recall}
