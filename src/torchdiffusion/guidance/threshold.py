"""Static and dynamic thresholding of x0 predictions (Saharia et al. 2022, Imagen, Sec. 2.3).

Thresholding acts on the denoised prediction, which is the same x0 in every coordinate system, so it needs no change
for VE coordinates; the range [-1, 1] is the data's. Wrap it outside guidance: thresholded(classifier_free(...)).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..processes import expand_like
from .base import GuidedDenoiser, Output, call

Tensor = torch.Tensor
METHODS = ("static", "dynamic")


def check_percentile(p: float) -> float:
    """A percentile in (0, 1]; ValueError otherwise (NaN included)."""
    p = float(p)
    if not 0.0 < p <= 1.0:
        raise ValueError(f"percentile must lie in (0, 1], got {p}")
    return p


def check_bound(bound: float) -> float:
    """A clipping bound: finite and > 0; ValueError otherwise."""
    b = float(bound)
    if not (math.isfinite(b) and b > 0):
        raise ValueError(f"bound must be finite and > 0, got {bound}")
    return b


def static_threshold(x0: Tensor, bound: float = 1.0) -> Tensor:
    """Clip x0 to [-bound, bound] (Saharia et al. 2022, Sec. 2.3, static thresholding)."""
    b = check_bound(bound)
    return x0.clamp(-b, b)


def dynamic_threshold(x0: Tensor, percentile: float = 0.995) -> Tensor:
    """s = max(p-th percentile of |x0| per sample, 1); clip x0 to [-s, s] and divide by s (Saharia et al. 2022,
    Sec. 2.3). A sample already inside [-1, 1] is returned unchanged."""
    p = check_percentile(percentile)
    flat = x0.detach().abs().reshape(x0.shape[0], -1)
    s = torch.quantile(flat if flat.dtype in (torch.float32, torch.float64) else flat.float(), p, dim=1)
    s = expand_like(s.clamp_min(1.0), x0)
    return torch.minimum(torch.maximum(x0, -s), s) / s


class Thresholded(GuidedDenoiser):
    """A denoiser whose x0 predictions are thresholded, statically or dynamically (Saharia et al. 2022, Sec. 2.3)."""

    def __init__(self, denoiser: Any, method: str = "dynamic", percentile: float = 0.995, bound: float = 1.0):
        super().__init__(denoiser)
        if method not in METHODS:
            raise ValueError(f"unknown thresholding {method!r}; choose one of {METHODS}")
        self.method, self.percentile, self.bound = method, check_percentile(percentile), check_bound(bound)

    def evaluate(self, x: Tensor, sigma: Tensor, cond: dict[str, Any], with_variance: bool) -> Output:
        x0, frac = call(self.denoiser, x, sigma, cond, with_variance)
        if self.method == "static":
            return static_threshold(x0, self.bound), frac
        return dynamic_threshold(x0, self.percentile), frac


def thresholded(denoiser: Any, method: str = "dynamic", percentile: float = 0.995, bound: float = 1.0) -> Thresholded:
    """Threshold every x0 prediction of `denoiser`: "static" clips to [-bound, bound], "dynamic" as in Imagen."""
    return Thresholded(denoiser, method, percentile, bound)
