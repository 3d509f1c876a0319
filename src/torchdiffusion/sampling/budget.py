"""The grid and budget policy: which sigma grid `sample` runs a method on for a budget of denoiser calls, and
`sample`, the one entry point over every registered sampler."""

from __future__ import annotations

import math
import numbers
from functools import partial
from typing import Any, Callable

import torch

from ..denoiser import CheckedDenoiser, all_finite, describe
from ..registry import SAMPLERS as METHODS
from . import grids
from .common import Generators, check_count, check_generators, check_sigmas, check_start
from .method import Method, check_options

Tensor = torch.Tensor


GRIDS: dict[str, Callable[[int, float, float], Tensor]] = {"karras": grids.karras, "exponential": grids.exponential,
                                                          "fewstep": grids.fewstep}


def default_grid(denoiser: Any, steps: int, sigma_min: float, sigma_max: float, grid: str = "karras",
                 tail: float | None = None, knee: float | None = None) -> Tensor:
    """The named grid (`GRIDS`) from sigma_max down to max(sigma_min, tail), then 0; `knee` (exponential grid only)
    coarsens it above that noise level, its first step capped at GRID_FIRST_STEP in sigma (`grids.exponential`).

    A discrete-time model (its `sigma_table`, the denoiser contract) gets its own table: when tail is None, its
    levels from the one nearest sigma_max (in log sigma) down to the one nearest sigma_min, respaced with trailing
    spacing (the whole table by default; a lower sigma_max, as in SDEdit, keeps the grid below it); else the named
    grid moved to the nearest table levels (`grids.nearest_in_table`). The few-step grid is never moved: students
    are distilled at its own levels (`distill.progressive`, `distill.reflow.grid_times`).
    """
    last = sigma_min if tail is None else max(sigma_min, tail)
    if knee is not None and grid != "exponential":
        raise ValueError(f"a grid knee applies to the exponential grid only, not {grid!r}")
    if grid == "fewstep":  # the levels a student was distilled at, a table's too: its backbone rounds t itself
        return grids.fewstep(steps, last, sigma_max)
    if knee is not None:
        named, uncapped = partial(grids.exponential, knee=knee, first=GRID_FIRST_STEP), partial(grids.exponential,
                                                                                               knee=knee)
    else:
        named = uncapped = GRIDS[grid]
    table = describe(denoiser).sigma_table
    if table is not None:
        if tail is None:
            log_t = table.double().log()
            hi = int((log_t - math.log(sigma_max)).abs().argmin()) + 1  # the range: levels lo..hi - 1
            lo = min(int((log_t - math.log(sigma_min)).abs().argmin()), hi - 1)
            sub = table[lo:hi]
            return grids.discrete_sigmas(sub, min(steps, len(sub)), "trailing")
        # the top gap against a step of steps + 1 levels over the range (the grid below, before its top is dropped)
        gap, step = math.log(float(table[-1]) / float(table[-2])), math.log(sigma_max / last) / steps
        if steps > 2 and sigma_max >= float(table[-1]) and gap > step and float(table[-2]) > last:
            # a table's top level can be far above the next (cosine: 20291 vs 642); spacing the grid from there
            # would spend steps between levels that do not exist. That jump is the grid's long first step: it lands
            # on the grid spaced from the second level (no further cap), past that level itself, where D barely
            # differs from D at the top (docs/samplers.md, "Re-choosing the rule on 16 tuning problems")
            rest = uncapped(steps, last, float(table[-2]))[1:]
            return grids.nearest_in_table(torch.cat([torch.tensor([sigma_max], dtype=rest.dtype), rest]), table)
        return grids.nearest_in_table(named(steps, last, sigma_max), table)
    return named(steps, last, sigma_max)


def resolve_tail(denoiser: Any, method: Method, nfe: int, tail: float | None) -> float | None:
    """The default grid's last nonzero sigma before clamping to sigma_min: `tail` if given, else the rule
    `grids.default_tail(nfe, denoiser.sigma_data)` for a deterministic fixed-step method and a denoiser with a
    `sigma_data`, except Karras-family methods on a discrete-time model, which keep the trailing table (None)."""
    if tail is not None:
        if isinstance(tail, bool) or not isinstance(tail, numbers.Real) or not 0 <= tail < math.inf:
            raise ValueError(f"tail must be a finite noise level >= 0, got {tail!r}")
        return float(tail)
    info = describe(denoiser)
    if method.kind != "ODE" or method.evals_per_step is None or info.sigma_data is None or method.grid == "fewstep":
        return None  # (a student's few-step grid is the one it was trained on: no tail)
    if info.discrete and method.grid != "exponential":
        return None
    return grids.default_tail(nfe, info.sigma_data)


GRID_KNEE = 10.0  # the default exponential grid's knee in units of sigma_data (docs/samplers.md, "Grid knee")
GRID_FIRST_STEP = 3.0  # the knee grid's first step is at most this ratio in sigma (docs/samplers.md, "Held-out protocol")


def resolve_knee(denoiser: Any, method: Method) -> float | None:
    """The default grid's knee: GRID_KNEE * denoiser.sigma_data for a deterministic fixed-step method on the
    exponential grid when the denoiser has a `sigma_data`, else None (plain log-uniform)."""
    sigma_data = describe(denoiser).sigma_data
    if method.kind != "ODE" or method.evals_per_step is None or method.grid != "exponential" or sigma_data is None:
        return None
    return GRID_KNEE * sigma_data


def _range(denoiser: Any, m: Method, nfe: int, sigma_min: float | None, sigma_max: float | None,
           tail: float | None) -> tuple[float, float, float | None]:
    """(sigma_min, sigma_max, the default grid's tail or None) from the arguments and the denoiser's attributes:
    finite with 0 < sigma_min < sigma_max, else a ValueError (the grids are spaced in log sigma)."""
    info = describe(denoiser)
    for name, v in (("sigma_min", sigma_min), ("sigma_max", sigma_max)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 < v < math.inf):
            raise ValueError(f"{name} must be a finite noise level > 0, got {v!r}")
    s_min = info.sigma_min if sigma_min is None else float(sigma_min)
    s_max = info.sigma_max if sigma_max is None else float(sigma_max)
    if not 0 < s_min < s_max:
        raise ValueError(f"sampling needs 0 < sigma_min < sigma_max, got sigma_min={s_min} and sigma_max={s_max} "
                         f"(a value not passed is the denoiser's)")
    last = resolve_tail(denoiser, m, nfe, tail)
    if last is not None and last >= s_max:
        if tail is not None:
            raise ValueError(f"the grid's tail {last} must lie below sigma_max={s_max}")
        last = None  # the rule does not apply to a range this short
    return s_min, s_max, last


def budget_grid(denoiser: Any, method: str, nfe: int, *, sigma_min: float | None = None,
                sigma_max: float | None = None, tail: float | None = None,
                options: dict[str, Any] | None = None) -> Tensor:
    """The default grid `sample` runs a fixed-step method on: the most steps whose calls fit in nfe.

    Steps are counted by `Method.calls`; for a method with the long-step rule (a step with sigma / sigma_next above
    max_ratio costs one call) every step count up to nfe is tried, since more steps can remove a long step and cost
    more. The arguments mean what they mean in `sample`.
    """
    m, options = METHODS[method], options or {}
    nfe = check_count("nfe", nfe)
    if m.evals_per_step is None:
        raise ValueError(f"{method} is adaptive: it has no fixed-step grid")
    s_min, s_max, last = _range(denoiser, m, nfe, sigma_min, sigma_max, tail)
    steps = m.steps_for(nfe, options)
    if steps < 1:
        raise ValueError(f"nfe={nfe} is below one step of {method} ({m.budget(options)[1]} evaluations)")
    knee = resolve_knee(denoiser, m)
    grid = default_grid(denoiser, steps, s_min, s_max, m.grid, last, knee)
    if m.long_steps:  # long steps cost 1 call: the most steps that still fit (calls are not monotone in steps)
        for more_steps in range(steps + 1, nfe + 1):
            more = default_grid(denoiser, more_steps, s_min, s_max, m.grid, last, knee)
            if len(more) <= more_steps:  # a table has no more levels to give
                break
            calls = m.calls(more, options)
            if calls <= nfe:
                grid = more
            elif calls == m.calls(more, {**options, "max_ratio": math.inf}):
                break  # over budget with no long step left: finer grids only cost more
    return grid


def sample(denoiser: Any, x: Tensor, *, method: str = "ddim", nfe: int | None = None, sigma_min: float | None = None,
           sigma_max: float | None = None, grid: Tensor | None = None, tail: float | None = None,
           generator: Generators = None, callback: Callable[[dict[str, Any]], None] | None = None,
           nan: str = "raise", **options: Any) -> Tensor:
    """Sample from x (already at sigma_max) down to sigma = 0 with at most `nfe` denoiser calls (default 50).

    Without a grid, the method's cost picks the most steps that fit in nfe (Heun: 2 per step, 1 for its last Euler
    step, and 1 for a step longer than max_ratio, `common.first_order`) on the method's default grid
    (`budget_grid`); a given grid (e.g. from calibrate_grid) is used as is and checked against nfe if nfe is given.
    An adaptive method uses the grid's endpoints and stops spending at nfe.
    sigma_min is the lowest noise level the denoiser is valid for (default: its `sigma_min`, else 0.002); the default
    grid may stop above it, at its "tail" max(sigma_min, tail), before its final step to 0. tail=None picks
    `grids.default_tail(nfe, denoiser.sigma_data)` for deterministic fixed-step methods when the denoiser has a
    `sigma_data` (sigma_min otherwise, and for stochastic methods; a discrete-time model keeps its trailing table for
    Karras-family methods); tail=0 ends the grid at sigma_min; a float sets it.
    The exponential grid of those methods also coarsens above a knee at GRID_KNEE sigma_data (`resolve_knee`), its
    first step at most a factor GRID_FIRST_STEP in sigma.
    generator: one torch.Generator for the in-loop noise of stochastic methods, or one per sample (row of x), which
    makes every sample independent of the batch it is drawn in (see common.noise_like).
    Every denoiser output is checked (`CheckedDenoiser`): a floating-point tensor of x's shape, never broadcast.
    nan: "raise" (default) makes a NaN or infinite x0_hat a ValueError naming the sigma and the call, and so is a
    non-finite sample at the end; "allow" runs on and may return them (to study divergence).
    """
    x = check_start(x)
    options = check_options(method, options)
    m = METHODS[method]
    checked = CheckedDenoiser(denoiser, nan, f"sampler {method!r}")  # checks nan before any work
    if nfe is not None:
        nfe = check_count("nfe", nfe)
    if grid is not None:
        if tail is not None or sigma_min is not None or sigma_max is not None:
            raise ValueError("give either a grid or sigma_min, sigma_max and tail (which set the default grid), "
                             "not both")
        check_sigmas(x, grid, "grid")
    if callback is not None and not callable(callback):
        raise ValueError(f"callback must be callable, got {type(callback).__name__}")
    check_generators(generator, x.shape[0])
    if m.evals_per_step is None:
        options.setdefault("max_nfe", 50 if nfe is None else nfe)
        if grid is None:
            s_min, s_max, last = _range(denoiser, m, options["max_nfe"], sigma_min, sigma_max, tail)
            grid = torch.tensor([s_max, s_min if last is None else max(s_min, last), 0.0], dtype=torch.float64)
    elif grid is None:
        grid = budget_grid(denoiser, method, 50 if nfe is None else nfe, sigma_min=sigma_min, sigma_max=sigma_max,
                           tail=tail, options=options)
    elif nfe is not None and m.calls(grid, options) > nfe:
        raise ValueError(f"{method} on this grid makes {m.calls(grid, options)} denoiser calls, above nfe={nfe}")
    if m.evals_per_step is not None:
        options = m.with_rule_options(grid, options)  # e.g. UniPC's order on a long grid, unless given
    out = m.fn(checked, x, grid, generator=generator, callback=callback, **options)
    if checked.finite and not all_finite(out):  # finite outputs of D, yet the steps' arithmetic overflowed
        bad = int((~torch.isfinite(out)).sum())
        raise ValueError(f"sampler {method!r} produced non-finite samples (NaN or inf in {bad} of {out.numel()} "
                         f"entries) from finite denoiser outputs: its steps overflowed (nan='allow' returns them)")
    return out
