"""What every guidance wrapper shares: attribute pass-through, the learned-variance path, argument checks.

A guidance wrapper is itself a Denoiser, D(x, sigma, **cond) -> x0_hat in VE coordinates (x = x0 + sigma eps), so
every sampler takes it unchanged. Samplers ask a denoiser for sigma_min / sigma_max / process; those pass through to
the wrapped model. A model with a learned-variance head (Nichol & Dhariwal 2021) also offers forward_with_variance;
wrappers guide its x0 and keep the variance fraction of the conditional branch, as GLIDE does.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import torch

from ..denoiser import sigma_batch

Tensor = torch.Tensor
Output = tuple[Tensor, "Tensor | None"]  # (x0_hat, learned-variance fraction or None)


def call(denoiser: Any, x: Tensor, sigma: Tensor, cond: dict[str, Any], with_variance: bool) -> Output:
    """One evaluation of a denoiser: (x0_hat, variance fraction) or (x0_hat, None)."""
    if with_variance:
        return denoiser.forward_with_variance(x, sigma, **cond)
    return denoiser(x, sigma, **cond), None


def check_scale(value: float, name: str, *, allow_negative: bool = False) -> float:
    """A guidance scale as a float: finite and, unless allowed, >= 0; ValueError otherwise."""
    v = float(value)
    if not math.isfinite(v) or (v < 0 and not allow_negative):
        bound = "finite" if allow_negative else "finite and >= 0"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return v


class GuidedDenoiser(ABC):
    """Base of the wrappers: a Denoiser made from `denoiser`; its other attributes (sigma_min, ...) pass through."""

    def __init__(self, denoiser: Any):
        self.denoiser = denoiser

    @abstractmethod
    def evaluate(self, x: Tensor, sigma: Tensor, cond: dict[str, Any], with_variance: bool) -> Output:
        """The guided (x0_hat, variance fraction); sigma has shape (B,), cond holds the caller's extra kwargs."""

    def __call__(self, x: Tensor, sigma: Tensor | float, **cond: Any) -> Tensor:
        return self.evaluate(x, sigma_batch(sigma, x), cond, False)[0]

    def forward_with_variance(self, x: Tensor, sigma: Tensor | float, **cond: Any) -> Output:
        """Guided x0_hat and the wrapped model's learned-variance fraction (for DDPM with variance='learned')."""
        return self.evaluate(x, sigma_batch(sigma, x), cond, True)

    def __getattr__(self, name: str) -> Any:
        inner = self.__dict__.get("denoiser")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)
