"""Guidance in a limited interval of noise levels (Kynkaenniemi et al. 2024, "Applying guidance in a limited
interval improves sample and distribution quality in diffusion models", Sec. 3): the guided denoiser for sigma in
(sigma_lo, sigma_hi], the unguided one (w = 1, the plain conditional model) elsewhere.

Samplers pass one sigma for the whole batch, so each call is either fully inside (one guided call) or fully outside
(one call of the plain model, no unconditional branch). A batch whose sigmas straddle an end runs both and selects.
"""

from __future__ import annotations

from typing import Any

import torch

from .base import GuidedDenoiser, Output, call

Tensor = torch.Tensor


class LimitedInterval(GuidedDenoiser):
    """`guided` for sigma in (sigma_lo, sigma_hi], `unguided` elsewhere (Kynkaenniemi et al. 2024, Sec. 3)."""

    def __init__(self, guided: Any, unguided: Any, sigma_lo: float, sigma_hi: float):
        super().__init__(guided)
        lo, hi = float(sigma_lo), float(sigma_hi)
        if not (0.0 <= lo < hi):  # also rejects NaN
            raise ValueError(f"need 0 <= sigma_lo < sigma_hi, got ({sigma_lo}, {sigma_hi})")
        self.guided, self.unguided, self.sigma_lo, self.sigma_hi = guided, unguided, lo, hi

    def evaluate(self, x: Tensor, sigma: Tensor, cond: dict[str, Any], with_variance: bool) -> Output:
        inside = (sigma > self.sigma_lo) & (sigma <= self.sigma_hi)
        if bool(inside.all()):
            return call(self.guided, x, sigma, cond, with_variance)
        if not bool(inside.any()):
            return call(self.unguided, x, sigma, cond, with_variance)
        (g, g_frac), (u, u_frac) = (call(d, x, sigma, cond, with_variance) for d in (self.guided, self.unguided))
        pick = lambda a, b: torch.where(inside.reshape(-1, *[1] * (a.ndim - 1)), a, b)  # noqa: E731
        return pick(g, u), None if g_frac is None else pick(g_frac, u_frac)


def limited_interval(guided: Any, unguided: Any, sigma_lo: float, sigma_hi: float) -> LimitedInterval:
    """Guidance only for sigma_lo < sigma <= sigma_hi, the unguided denoiser elsewhere (one call either way)."""
    return LimitedInterval(guided, unguided, sigma_lo, sigma_hi)
