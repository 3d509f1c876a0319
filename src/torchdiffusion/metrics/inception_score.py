"""Inception Score from classifier logits: exp(E_x KL(p(y|x) || p(y))) (Salimans et al. 2016, sec. 4)."""

from __future__ import annotations

import math

import torch

Tensor = torch.Tensor


def inception_score(logits: Tensor, *, splits: int = 10) -> dict[str, float]:
    """Mean and std over `splits` equal parts of exp(mean_x KL(p(y|x) || p(y))), p(y) the part's mean prediction;
    between 1 (every prediction equal) and the number of classes (confident and uniform over classes)."""
    n = logits.shape[0]
    if not 1 <= splits <= n:
        raise ValueError(f"splits must lie in [1, {n}], got {splits}")
    log_p = torch.log_softmax(logits.double(), dim=1)
    scores = []
    for part in torch.tensor_split(log_p, splits):
        log_py = torch.logsumexp(part, 0) - math.log(part.shape[0])
        kl = (part.exp() * (part - log_py[None])).sum(1)
        scores.append(float(kl.mean().exp()))
    s = torch.tensor(scores, dtype=torch.float64)
    return {"mean": float(s.mean()), "std": float(s.std()) if splits > 1 else 0.0}
