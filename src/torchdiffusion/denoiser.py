"""The denoiser contract D(x, sigma, **cond) -> x0_hat, and the small wrappers every sampler may be handed.

Samplers see every model as D in variance-exploding coordinates x = x0 + sigma * eps (Karras et al. 2022, eq. 2);
a process state x_t = alpha x0 + sigma_t eps maps to x = x_t / alpha at sigma = sigma_t / alpha. Besides the call,
a denoiser may describe itself by the attributes of `Denoiser`; `describe` reads them with their documented
defaults, so a plain function is a denoiser too. Nothing here knows about processes or predictions.
"""

from __future__ import annotations

import math
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
    """The `Denoiser` attributes of any callable, defaults (0.002, 80, None, None) where it has none; a declared
    range that is not finite with 0 <= sigma_min < sigma_max, or a sigma_data that is not finite and > 0, is a
    ValueError (every default grid is spaced between them)."""
    s_min = float(getattr(denoiser, "sigma_min", DEFAULT_SIGMA_MIN))
    s_max = float(getattr(denoiser, "sigma_max", DEFAULT_SIGMA_MAX))
    sigma_data = getattr(denoiser, "sigma_data", None)
    sigma_data = None if sigma_data is None else float(sigma_data)
    if not 0 <= s_min < s_max < math.inf:  # written so that NaN fails too
        raise ValueError(f"the denoiser ({type(denoiser).__name__}) declares sigma_min={s_min} and sigma_max={s_max}; "
                         f"its noise range must be finite with 0 <= sigma_min < sigma_max")
    if sigma_data is not None and not 0 < sigma_data < math.inf:
        raise ValueError(f"the denoiser ({type(denoiser).__name__}) declares sigma_data={sigma_data}; it must be "
                         f"finite and > 0, or None when unknown")
    return DenoiserInfo(s_min, s_max, sigma_data, getattr(denoiser, "sigma_table", None))


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


NAN_POLICIES = ("raise", "allow")  # what CheckedDenoiser does with a NaN or infinite x0_hat


def check_nan_policy(nan: Any) -> str:
    """nan, one of NAN_POLICIES, or a ValueError."""
    if nan not in NAN_POLICIES:
        raise ValueError(f"nan must be one of {', '.join(map(repr, NAN_POLICIES))}, got {nan!r}")
    return nan


def all_finite(t: Tensor) -> bool:
    """Whether every entry of t is finite. One summing pass: a NaN or inf entry makes the sum NaN or inf, so a finite
    sum proves them all finite, and only a sum that is not (or that overflowed) is checked entry by entry. The sum is
    cheaper than torch.isfinite(t).all(), which writes a boolean tensor and reduces it."""
    if t.requires_grad:  # an output taken under autograd: the check must not extend its graph
        t = t.detach()
    total = t.sum(dtype=torch.float64 if t.dtype == torch.float64 else torch.float32).item()
    return math.isfinite(total) or bool(torch.isfinite(t).all())


def sigma_text(sigma: Tensor | float) -> str:
    """'sigma=0.5', or 'sigma in [a, b]' for a batch of different levels: where an error happened."""
    s = torch.as_tensor(sigma).detach().reshape(-1).double().cpu()
    if s.numel() == 0:
        return "sigma=?"
    lo, hi = float(s.min()), float(s.max())
    return f"sigma={lo:.6g}" if lo == hi else f"sigma in [{lo:.6g}, {hi:.6g}]"


class CheckedDenoiser:
    """Wraps a denoiser and checks each output: a floating-point tensor of x's shape, finite unless nan="allow".

    A (B, 1) or (1, D) x0_hat for x of (B, D) would broadcast through every sampler's arithmetic into samples of
    the right shape and the wrong values, and one NaN x0_hat makes every later step NaN, so both are ValueErrors
    naming the sigma and the call. `sample` applies it once, so no sampler loop checks anything. The check costs
    one summing pass over x0_hat (`all_finite`); the shape and dtype tests are attribute reads. Every other
    attribute (sigma_min, process, ...) passes through.
    """

    def __init__(self, denoiser: Any, nan: str = "raise", context: str = ""):
        self.denoiser, self.finite = denoiser, check_nan_policy(nan) == "raise"
        self.context, self.evaluations = context, 0

    def __call__(self, x: Tensor, sigma: Tensor, **cond: Any) -> Tensor:
        self.evaluations += 1
        return self.check(self.denoiser(x, sigma, **cond), x, sigma, "x0_hat")

    def forward_with_variance(self, x: Tensor, sigma: Tensor, **cond: Any) -> tuple[Tensor, Tensor | None]:
        self.evaluations += 1
        x0, frac = self.denoiser.forward_with_variance(x, sigma, **cond)
        # DDPM interpolates the log-variance per element with frac, so it is held to x's shape too
        return (self.check(x0, x, sigma, "x0_hat"),
                None if frac is None else self.check(frac, x, sigma, "learned-variance fraction"))

    def check(self, out: Any, x: Tensor, sigma: Tensor, what: str) -> Tensor:
        """out itself if it is a floating tensor of x's shape and (unless nan="allow") finite; ValueError if not."""
        if not isinstance(out, Tensor) or out.shape != x.shape or not out.is_floating_point():
            got = (f"a tensor of dtype {str(out.dtype).removeprefix('torch.')} and shape {tuple(out.shape)}"
                   if isinstance(out, Tensor) else f"a {type(out).__name__}")
            raise ValueError(f"the denoiser's {what} is {got} for x of shape {tuple(x.shape)} at "
                             f"{sigma_text(sigma)}{self.where()}; it must be a floating-point tensor of x's shape "
                             f"(another shape would be broadcast into wrong samples)")
        if self.finite and not all_finite(out):
            bad = int((~torch.isfinite(out)).sum())
            raise ValueError(f"the denoiser's {what} is not finite (NaN or inf in {bad} of {out.numel()} entries) "
                             f"at {sigma_text(sigma)}{self.where()}; every later step would carry it into the "
                             f"samples (sample() and generate() run on regardless with nan='allow')")
        return out

    def where(self) -> str:
        """' (call 3 of sampler 'ddim')': which evaluation failed, for the error messages."""
        return f" (call {self.evaluations}{' of ' + self.context if self.context else ''})"

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
