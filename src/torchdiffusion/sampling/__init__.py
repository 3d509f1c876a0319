"""Samplers as pure functions over a denoiser and a sigma grid, a registry of them, and one entry point."""

from __future__ import annotations

import math

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import torch

from ..processes import DiscreteVP
from . import grids
from .adaptive import sample_dopri5
from .ancestral import sample_edm_stochastic, sample_euler_ancestral
from .ddim import sample_ddim
from .ddpm import sample_ddpm
from .dpm_solver import sample_dpm_solver
from .dpmpp import sample_dpmpp_2m, sample_dpmpp_2m_sde, sample_dpmpp_2s, sample_dpmpp_3m
from .lms import sample_ipndm, sample_lms
from .ode import sample_euler, sample_heun, sample_rk4
from .sde import sample_ald, sample_euler_maruyama, sample_pc
from .unipc import sample_unipc
from .common import MAX_STEP_RATIO, Generators, first_order

Tensor = torch.Tensor
Cost = Callable[[dict[str, Any]], tuple[int, int]]


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
        best with a grid tail (docs/samplers.md, "Grid tail").
    """

    fn: Callable[..., Tensor]
    kind: str
    order: int
    evals_per_step: int | None
    final_evals: int | None = None
    cost: Cost | None = None
    grid: str = "karras"
    long_steps: bool = False

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


def _single_step_solver(order: int) -> Cost:
    return lambda o: (o.get("order", order), 1)


METHODS: dict[str, Method] = {
    # probability-flow ODE
    "euler": Method(sample_euler, "ODE", 1, 1),
    "heun": Method(sample_heun, "ODE", 2, 2, final_evals=1, long_steps=True),
    "rk4": Method(sample_rk4, "ODE", 4, 4, final_evals=1, long_steps=True),
    "dopri5": Method(sample_dopri5, "ODE", 5, None),
    "ddim": Method(sample_ddim, "ODE", 1, 1),
    "dpm_solver_1": Method(partial(sample_dpm_solver, order=1), "ODE", 1, 1, cost=_single_step_solver(1),
                           long_steps=True),  # the rule matters where an `order` option raises it
    "dpm_solver_2": Method(partial(sample_dpm_solver, order=2), "ODE", 2, 2, 1, cost=_single_step_solver(2),
                           long_steps=True),
    "dpm_solver_3": Method(partial(sample_dpm_solver, order=3), "ODE", 3, 3, 1, cost=_single_step_solver(3),
                           long_steps=True),
    "dpmpp_2s": Method(sample_dpmpp_2s, "ODE", 2, 2, final_evals=1),
    "dpmpp_2m": Method(sample_dpmpp_2m, "ODE", 2, 1, grid="exponential"),
    "dpmpp_3m": Method(sample_dpmpp_3m, "ODE", 3, 1, grid="exponential"),
    "unipc": Method(sample_unipc, "ODE", 3, 1, grid="exponential"),
    "lms": Method(sample_lms, "ODE", 4, 1),
    "ipndm": Method(sample_ipndm, "ODE", 2, 1, grid="exponential"),
    # stochastic
    "ddpm": Method(sample_ddpm, "SDE", 1, 1),
    "euler_ancestral": Method(sample_euler_ancestral, "SDE", 1, 1),
    "dpmpp_2s_ancestral": Method(partial(sample_dpmpp_2s, eta=1.0), "SDE", 2, 2, final_evals=1),
    "dpmpp_2m_sde": Method(sample_dpmpp_2m_sde, "SDE", 2, 1, grid="exponential"),
    "edm_stochastic": Method(sample_edm_stochastic, "SDE", 2, 2, final_evals=1, long_steps=True),
    "em": Method(sample_euler_maruyama, "SDE", 1, 1),
    "pc": Method(sample_pc, "SDE", 1, 2, final_evals=1, cost=lambda o: (1 + o.get("n_corrector", 1), 1)),
    "ald": Method(sample_ald, "SDE", 1, 1, final_evals=1, cost=lambda o: (o.get("n_steps", 1), 1)),
}


GRIDS: dict[str, Callable[[int, float, float], Tensor]] = {"karras": grids.karras, "exponential": grids.exponential}


def is_discrete(denoiser: Any) -> bool:
    """A model trained on the integer steps of a DDPM table (it is only asked at the table's levels)."""
    return isinstance(getattr(denoiser, "process", None), DiscreteVP) and bool(getattr(denoiser, "discrete", False))


def default_grid(denoiser: Any, steps: int, sigma_min: float, sigma_max: float, grid: str = "karras",
                 tail: float | None = None, knee: float | None = None) -> Tensor:
    """The named grid (`GRIDS`) from sigma_max down to max(sigma_min, tail), then 0; `knee` (exponential grid only)
    coarsens it above that noise level (`grids.exponential`).

    A discrete-time DDPM model gets its own table: respaced with trailing spacing when tail is None, else the named
    grid moved to the nearest table levels (`grids.nearest_in_table`).
    """
    last = sigma_min if tail is None else max(sigma_min, tail)
    if knee is not None:
        if grid != "exponential":
            raise ValueError(f"a grid knee applies to the exponential grid only, not {grid!r}")
        named = partial(grids.exponential, knee=knee)
    else:
        named = GRIDS[grid]
    if is_discrete(denoiser):
        process = denoiser.process
        if tail is None:
            return grids.discrete_sigmas(process, min(steps, process.T), "trailing")
        table = process.sigmas_ve
        gap, step = math.log(float(table[-1]) / float(table[-2])), math.log(sigma_max / last) / max(steps - 1, 1)
        if steps > 2 and sigma_max >= float(table[-1]) and gap > step and float(table[-2]) > last:
            # a table's top level can be far above the next (cosine: 20291 vs 642); spacing the grid from there
            # would spend steps between levels that do not exist, so the grid starts at the second level
            rest = named(steps - 1, last, float(table[-2]))
            return grids.nearest_in_table(torch.cat([torch.tensor([sigma_max], dtype=rest.dtype), rest]), table)
        return grids.nearest_in_table(named(steps, last, sigma_max), table)
    return named(steps, last, sigma_max)


def resolve_tail(denoiser: Any, method: Method, nfe: int, tail: float | None) -> float | None:
    """The default grid's last nonzero sigma before clamping to sigma_min: `tail` if given, else the rule
    `grids.default_tail(nfe, denoiser.sigma_data)` for a deterministic fixed-step method and a denoiser with a
    `sigma_data`, except Karras-family methods on a discrete-time model, which keep the trailing table (None)."""
    if tail is not None:
        if not tail >= 0:
            raise ValueError(f"tail must be a noise level >= 0, got {tail}")
        return float(tail)
    sigma_data = getattr(denoiser, "sigma_data", None)
    if method.kind != "ODE" or method.evals_per_step is None or sigma_data is None:
        return None
    if is_discrete(denoiser) and method.grid != "exponential":
        return None
    return grids.default_tail(nfe, float(sigma_data))


GRID_KNEE = 10.0  # the default exponential grid's knee in units of sigma_data (docs/samplers.md, "Grid knee")


def resolve_knee(denoiser: Any, method: Method) -> float | None:
    """The default grid's knee: GRID_KNEE * denoiser.sigma_data for a deterministic fixed-step method on the
    exponential grid when the denoiser has a `sigma_data`, else None (plain log-uniform)."""
    sigma_data = getattr(denoiser, "sigma_data", None)
    if method.kind != "ODE" or method.evals_per_step is None or method.grid != "exponential" or sigma_data is None:
        return None
    return GRID_KNEE * float(sigma_data)


def check_max_ratio(method: str, value: Any) -> float:
    """The option max_ratio as a float > 1 (inf: never first order), for a method that has the long-step rule."""
    long = sorted(n for n, k in METHODS.items() if k.long_steps)
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


def _range(denoiser: Any, m: Method, nfe: int, sigma_min: float | None, sigma_max: float | None,
           tail: float | None) -> tuple[float, float, float | None]:
    """(sigma_min, sigma_max, the default grid's tail or None) from the arguments and the denoiser's attributes."""
    s_min = float(getattr(denoiser, "sigma_min", 0.002) if sigma_min is None else sigma_min)
    s_max = float(getattr(denoiser, "sigma_max", 80.0) if sigma_max is None else sigma_max)
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
           **options: Any) -> Tensor:
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
    The exponential grid of those methods also coarsens above a knee at GRID_KNEE sigma_data (`resolve_knee`).
    generator: one torch.Generator for the in-loop noise of stochastic methods, or one per sample (row of x), which
    makes every sample independent of the batch it is drawn in (see common.noise_like).
    """
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < 1:
        got = f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must be a floating-point tensor (batch, ...) (batch first), got {got}")
    if method not in METHODS:
        raise ValueError(f"unknown sampler {method!r}; choose one of {sorted(METHODS)}")
    m = METHODS[method]
    if nfe is not None and nfe < 1:
        raise ValueError(f"nfe must be >= 1, got {nfe}")
    if "max_ratio" in options:
        options["max_ratio"] = check_max_ratio(method, options["max_ratio"])
    if grid is not None and tail is not None:
        raise ValueError("give either a grid or a tail (the last nonzero sigma of the default grid), not both")
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
    return m.fn(denoiser, x, grid, generator=generator, callback=callback, **options)


from .calibrate import calibrate_grid  # noqa: E402  (uses METHODS)

__all__ = ["METHODS", "Method", "budget_grid", "calibrate_grid", "check_max_ratio", "default_grid", "grids",
           "resolve_knee", "resolve_tail", "sample", "sample_ald", "sample_ddim", "sample_ddpm", "sample_dopri5",
           "sample_dpm_solver", "sample_dpmpp_2m", "sample_dpmpp_2m_sde", "sample_dpmpp_2s", "sample_dpmpp_3m",
           "sample_edm_stochastic", "sample_euler", "sample_euler_ancestral", "sample_euler_maruyama", "sample_heun",
           "sample_lms", "sample_pc", "sample_rk4", "sample_unipc"]
