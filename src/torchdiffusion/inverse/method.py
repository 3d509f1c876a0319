"""What a posterior sampler is besides its function: the posterior it targets, its kind and its cost in denoiser
calls (`InverseMethod`, defined beside each method and named in `torchdiffusion.registry.INVERSE`)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..registry import INVERSE

Tensor = torch.Tensor
NOT_OPTIONS = ("generator", "noise_std")  # keyword arguments of every method that `solve` itself passes


@dataclass(frozen=True)
class InverseMethod:
    """A posterior sampler `fn(denoiser, y, operator, x, sigmas, *, noise_std, generator, **options) -> x0`.

    kind: "projection" (the measured part replaced by the noised measurement), "guidance" (a likelihood gradient
        through D), "spectral" (per-coordinate updates in A's SVD basis) or "SMC" (weighted particles).
    target: the distribution its draws follow, in a few words.
    evals_per_step: denoiser calls per grid step (a particle method's call on all of a row's particles is one).
    cost: (steps, options) -> calls on a grid of `steps` nonzero levels, where that differs from
        steps * evals_per_step (RePaint's jumps, SMC's last level).
    particles: whether the method carries `options["particles"]` particles per row of y.
    exact: whether its draws converge to the exact posterior (of the discretised diffusion) as particles grow.
    needs_linear: whether it needs a linear operator (adjoint, SVD); False where only A(x) and its gradient are
        used (DPS), which makes it the method for a nonlinear `DecodedOperator` (latent models).
    """

    fn: Callable[..., Tensor]
    kind: str
    target: str
    evals_per_step: int = 1
    cost: Callable[[int, dict[str, Any]], int] | None = None
    particles: bool = False
    exact: bool = False
    needs_linear: bool = True

    @property
    def options(self) -> tuple[str, ...]:
        """The keyword options the method's function takes, from its signature."""
        params = inspect.signature(self.fn).parameters.values()
        return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name not in NOT_OPTIONS)

    def defaults(self) -> dict[str, Any]:
        """The options' default values."""
        params = inspect.signature(self.fn).parameters
        return {name: params[name].default for name in self.options}

    def calls(self, steps: int, options: dict[str, Any] | None = None) -> int:
        """Denoiser calls per row on a grid of `steps` nonzero levels (then 0)."""
        options = {**self.defaults(), **(options or {})}
        return self.cost(steps, options) if self.cost is not None else steps * self.evals_per_step

    def steps_for(self, nfe: int, options: dict[str, Any] | None = None) -> int:
        """The most grid levels whose calls fit in nfe (0 if none), by bisection: calls grow with steps, and every
        method makes at least steps - 1 calls."""
        lo, hi = 0, nfe + 1  # calls(lo) <= nfe is the invariant (calls(0) = 0)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if self.calls(mid, options) <= nfe else (lo, mid - 1)
        return lo


def check_options(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options of a `solve` call checked against the method's own; an unknown one is an error naming them."""
    known = INVERSE.lookup(method).options
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for inverse method {method!r}; its options are: "
                         f"{', '.join(known) or 'none'}")
    return options
