"""The denoiser contract D(x, sigma, **cond) -> x0_hat, and the small wrappers every sampler may be handed.

Samplers see every model as D in variance-exploding coordinates x = x0 + sigma * eps (Karras et al. 2022, eq. 2);
a process state x_t = alpha x0 + sigma_t eps maps to x = x_t / alpha at sigma = sigma_t / alpha. Besides the call,
a denoiser may describe itself by the attributes of `Denoiser`; `describe` reads them with their documented
defaults, so a plain function is a denoiser too. Nothing here knows about processes or predictions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

Tensor = torch.Tensor

# what `describe` assumes for a denoiser that does not say (EDM's range, Karras et al. 2022, Table 1)
DEFAULT_SIGMA_MIN, DEFAULT_SIGMA_MAX = 0.002, 80.0


class Denoiser(Protocol):
    """E[x0 | x] in VE coordinates: x (B, ...), sigma (B,) -> x0_hat (B, ...), and what samplers may ask of it.

    sigma_min, sigma_max: the noise range it is valid for (default grids span it).
    sigma_data: the data's scale, or None when unknown (sets the default grid's tail and knee).
    sigma_table: the ascending VE noise levels of a model trained on a discrete table (DDPM steps), or None when
        continuous: such a model is asked at its own levels only (grids are respaced onto the table).
    round_sigma(sigma): the table level nearest to sigma (sigma itself when continuous).
    """

    sigma_min: float
    sigma_max: float
    sigma_data: float | None
    sigma_table: Tensor | None

    def __call__(self, x: Tensor, sigma: Tensor, **cond: Any) -> Tensor: ...

    def round_sigma(self, sigma: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class DenoiserInfo:
    """What a denoiser says of itself, with the contract's defaults filled in."""

    sigma_min: float
    sigma_max: float
    sigma_data: float | None
    sigma_table: Tensor | None

    @property
    def discrete(self) -> bool:
        """Trained on a table of noise levels (asked at those levels only)."""
        return self.sigma_table is not None


def describe(denoiser: Any) -> DenoiserInfo:
    """The `Denoiser` attributes of any callable, defaults (0.002, 80, None, None) where it has none."""
    sigma_data = getattr(denoiser, "sigma_data", None)
    return DenoiserInfo(float(getattr(denoiser, "sigma_min", DEFAULT_SIGMA_MIN)),
                        float(getattr(denoiser, "sigma_max", DEFAULT_SIGMA_MAX)),
                        None if sigma_data is None else float(sigma_data), getattr(denoiser, "sigma_table", None))


def sigma_batch(sigma: Tensor | float, x: Tensor) -> Tensor:
    """A scalar or (B,) noise level as shape (B,) in x's dtype and device: the form denoisers receive."""
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if s.ndim == 0:
        return s.expand(x.shape[0])
    if s.shape != (x.shape[0],):
        raise ValueError(f"sigma must be a scalar or of shape ({x.shape[0]},), got {tuple(s.shape)}")
    return s


class CountingDenoiser:
    """Wraps a denoiser and counts its evaluations (NFE); every other attribute passes through."""

    def __init__(self, denoiser: Any):
        self.denoiser, self.calls = denoiser, 0

    def __call__(self, x: Tensor, sigma: Tensor, **cond: Any) -> Tensor:
        self.calls += 1
        return self.denoiser(x, sigma, **cond)

    def forward_with_variance(self, x: Tensor, sigma: Tensor, **cond: Any) -> tuple[Tensor, Tensor | None]:
        self.calls += 1
        return self.denoiser.forward_with_variance(x, sigma, **cond)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["denoiser"], name)


class Conditioned:
    """D(x, sigma) = denoiser(x, sigma, **cond) with cond bound; attributes (sigma_min, process...) pass through.

    Samplers call D(x, sigma) only, so conditioning is bound here, once, per batch of per-sample tensors.
    """

    def __init__(self, denoiser: Any, **cond: Any):
        self.denoiser, self.cond = denoiser, cond

    def __call__(self, x: Tensor, sigma: Tensor, **more: Any) -> Tensor:
        return self.denoiser(x, sigma, **self.cond, **more)

    def forward_with_variance(self, x: Tensor, sigma: Tensor, **more: Any) -> tuple[Tensor, Tensor | None]:
        return self.denoiser.forward_with_variance(x, sigma, **self.cond, **more)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["denoiser"], name)
