"""What a sampler is besides its function: kind, order, cost in denoiser calls and options (`Method`, defined
beside each sampler function and named in `torchdiffusion.registry.SAMPLERS`), and the check of a call's options."""

from __future__ import annotations

import inspect
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..registry import SAMPLERS
from .common import MAX_STEP_RATIO, first_order

Tensor = torch.Tensor
Cost = Callable[[dict[str, Any]], tuple[int, int]]
NOT_OPTIONS = ("generator", "callback")  # keyword arguments of every sampler that `sample` itself passes


@dataclass(frozen=True)
class Method:
    """A sampler with its kind, order and cost in denoiser calls.

    kind: "ODE" (deterministic, converges to the probability-flow map) or "SDE" (stochastic).
    order: convergence order of the ODE discretisation in the step size; for SDE samplers, the order of the
        deterministic part of the step (their strong order is lower).
    evals_per_step: denoiser calls per grid step with default options; None for an adaptive solver, whose step
        count follows its tolerances (sample() caps it with max_nfe = nfe).
    final_evals: calls of a last step that ends at sigma = 0, where it differs (Heun's last step is Euler's: 1).
    cost: (evals_per_step, final_evals) for the given options, where options change them (corrector steps).
    long_steps: whether a step with sigma / sigma_next above the option max_ratio (default common.MAX_STEP_RATIO) is
        taken first order at one call (`common.first_order`: Heun, RK4, DPM-Solver-2/3, EDM's stochastic sampler).
    grid: the default grid family: "karras" (rho = 7, Karras et al. 2022, eq. 5) or "exponential" (uniform in
        log-SNR) for the multistep exponential integrators, whose extrapolation weights depend on the step ratios
        h_(i-1) / h_i, all 1 on this grid (Lu et al. 2022b, Sec. 4), and for iPNDM, whose equal-step weights fit it
        best with a grid tail (docs/samplers.md, "Grid tail"); "fewstep" (`grids.fewstep`) for distilled students.
    rule_options: steps -> the options the default rule gives the method on a grid of that many steps where the
        caller passes none (UniPC's order, docs/samplers.md, "Re-choosing the rule on 16 tuning problems"); they never
        change the cost in calls (`with_rule_options`).
    """

    fn: Callable[..., Tensor]
    kind: str
    order: int
    evals_per_step: int | None
    final_evals: int | None = None
    cost: Cost | None = None
    grid: str = "karras"
    long_steps: bool = False
    rule_options: Callable[[int], dict[str, Any]] | None = None

    @property
    def options(self) -> tuple[str, ...]:
        """The keyword options the method's function takes (eta, order, s_churn, ...), from its signature."""
        params = inspect.signature(self.fn).parameters.values()
        return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name not in NOT_OPTIONS)

    def budget(self, options: dict[str, Any]) -> tuple[int, int]:
        """(calls per step, calls of a final step to sigma = 0) under these options."""
        if self.evals_per_step is None:
            raise ValueError("an adaptive method has no fixed cost per step")
        if self.cost is not None:
            return self.cost(options)
        return self.evals_per_step, self.evals_per_step if self.final_evals is None else self.final_evals

    def steps_for(self, nfe: int, options: dict[str, Any] | None = None) -> int:
        """The most steps of a grid ending in 0 whose calls, (steps - 1) * per_step + final, fit in nfe (0 if none)."""
        per_step, final = self.budget(options or {})
        return 0 if nfe < final else (nfe - final) // per_step + 1

    def with_rule_options(self, sigmas: Tensor, options: dict[str, Any]) -> dict[str, Any]:
        """options over the default rule's options for this grid (`rule_options`), which fill only what is not given."""
        if self.rule_options is None:
            return options
        return {**self.rule_options(len(sigmas) - 1), **options}

    def calls(self, sigmas: Tensor, options: dict[str, Any] | None = None) -> int:
        """Denoiser calls of one run over this grid."""
        options = options or {}
        per_step, final = self.budget(options)
        s = sigmas.tolist()
        n = len(s) - 1
        calls = per_step * (n - 1) + (final if s[-1] == 0 else per_step)
        if self.long_steps:  # each long step costs 1 call instead of per_step
            ratio = options.get("max_ratio", MAX_STEP_RATIO)
            calls -= (per_step - 1) * sum(1 for a, b in zip(s[:-1], s[1:]) if b > 0 and first_order(a, b, ratio))
        return calls


def single_step_cost(order: int) -> Cost:
    """The cost of a single-step solver whose `order` option sets its calls per step (the last step: one)."""
    return lambda o: (o.get("order", order), 1)


@dataclass(frozen=True)
class Bounds:
    """What a numeric sampler option may be: a finite number (an integer where `integer`) >= low (> low where
    `above`) and <= high; +inf too where `inf` says it means something (s_tmax = inf: churn at every level); None
    where `none` (the sampler's own rule). A bool is never a number here (True would pass as 1)."""

    low: float = -math.inf
    high: float = math.inf
    above: bool = False
    integer: bool = False
    inf: bool = False
    none: bool = False

    def admits(self, value: Any) -> bool:
        """Whether value is within these bounds (NaN never is)."""
        if value is None:
            return self.none
        if isinstance(value, bool) or not isinstance(value, numbers.Integral if self.integer else numbers.Real):
            return False
        v = float(value)
        if v == math.inf:
            return self.inf and self.high == math.inf
        return (v > self.low if self.above else v >= self.low) and v <= self.high  # False for NaN

    def __str__(self) -> str:
        parts = [f"{'an integer' if self.integer else 'a finite number'} {'>' if self.above else '>='} {self.low:g}"]
        if self.high < math.inf:
            parts.append(f"and <= {self.high:g}")
        if self.inf:
            parts.append("(or inf)")
        if self.none:
            parts.append("(or None: the default rule)")
        return " ".join(parts)


# The numeric options of the registered samplers, by name (a name means the same in every sampler that takes it;
# an upper bound of one sampler's own, like LMS's order <= 4, stays in its function). tests/test_sampler_checks.py
# checks that every option of every registered sampler is named here, in FLAGS or in NOT_NUMERIC.
OPTION_BOUNDS: dict[str, Bounds] = {
    "eta": Bounds(0.0),  # noise scale of the ancestral split: 0 deterministic, 1 DDPM's
    "s_noise": Bounds(0.0),  # multiplier of the fresh noise's std
    "s_churn": Bounds(0.0), "s_tmin": Bounds(0.0), "s_tmax": Bounds(0.0, inf=True),  # EDM's churn and its window
    "snr": Bounds(0.0),  # predictor-corrector's signal-to-noise ratio (0: no correction)
    "order": Bounds(1, integer=True),
    "final_order": Bounds(1, integer=True),  # D's UniPC extrapolates to sigma = 0 in its last step (1: D itself)
    "r1": Bounds(0.0, 1.0, above=True, none=True), "r2": Bounds(0.0, 1.0, above=True, none=True),  # stage positions
    "n_corrector": Bounds(0, integer=True),  # 0: the predictor alone
    "n_steps": Bounds(1, integer=True),
    "eps": Bounds(0.0, above=True, none=True),  # Langevin step size
    "rtol": Bounds(0.0, above=True), "atol": Bounds(0.0, above=True),
    "max_nfe": Bounds(1, integer=True, none=True),
}
FLAGS = ("corrector",)  # options that are True or False
NOT_NUMERIC = ("variance", "form", "solver_type", "stats", "max_ratio")  # checked by their sampler (max_ratio: below)


def check_options(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options of a `sample` call checked against the method's own: an unknown name is an error naming the
    method's options (a typo such as etta=0.5 would otherwise be dropped silently); a numeric option outside its
    `OPTION_BOUNDS` (eta = NaN would write NaN samples) is an error; max_ratio is converted."""
    SAMPLERS.lookup(method)
    known = SAMPLERS[method].options
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for sampler {method!r}; its options are: "
                         f"{', '.join(known) or 'none'}")
    for name, value in options.items():
        if name in FLAGS:
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be True or False for sampler {method!r}, got {value!r}")
        elif name in OPTION_BOUNDS and not OPTION_BOUNDS[name].admits(value):
            raise ValueError(f"{name} must be {OPTION_BOUNDS[name]} for sampler {method!r}, got {value!r}")
    if "max_ratio" in options:
        options = {**options, "max_ratio": check_max_ratio(method, options["max_ratio"])}
    return options


def check_max_ratio(method: str, value: Any) -> float:
    """The option max_ratio as a float > 1 (inf: never first order), for a method that has the long-step rule."""
    long = sorted(n for n, k in SAMPLERS.items() if k.long_steps)
    if method not in long:
        raise ValueError(f"max_ratio (sigma / sigma_next above which a step is first order) applies to {long} only, "
                         f"not {method}")
    try:
        ratio = float(value)
    except (TypeError, ValueError):
        ratio = math.nan
    if not ratio > 1:
        raise ValueError(f"max_ratio (sigma / sigma_next above which a step is first order) must be a number > 1 "
                         f"(inf: never), got {value!r}")
    return ratio
