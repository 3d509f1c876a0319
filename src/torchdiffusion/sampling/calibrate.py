"""Step-grid calibration: choose a deterministic sampler's interior sigmas to minimise its error on given starts.

The grid between sigma_max and sigma_min is parameterised by step-size logits theta: log-sigma steps
softmax(theta) * log(sigma_max / sigma_min), so every theta is a valid decreasing grid with fixed endpoints. The
objective is the mean L2 distance of the sampler's output from the exact probability-flow map (a tight adaptive
solve) on x_cal; it is minimised by a compass (pattern) search (Kolda, Lewis & Torczon 2003, Alg. 3.2), which needs
no gradients of the denoiser and no dependency beyond torch.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..denoiser import CheckedDenoiser, CountingDenoiser
from . import grids
from .adaptive import sample_dopri5
from .budget import budget_grid
from .common import check_count, check_start
from .method import check_options
from ..registry import SAMPLERS as METHODS

Tensor = torch.Tensor


def grid_from_logits(theta: Tensor, sigma_min: float, sigma_max: float) -> Tensor:
    """sigma_max, ..., sigma_min with log-sigma steps softmax(theta) * log(sigma_max / sigma_min), then 0."""
    steps = torch.softmax(theta.double(), 0) * math.log(sigma_max / sigma_min)
    log_s = math.log(sigma_max) - torch.cat([steps.new_zeros(1), steps.cumsum(0)])
    s = log_s.exp()
    s[0], s[-1] = sigma_max, sigma_min
    return grids.append_zero(s)


def logits_from_grid(sigmas: Tensor) -> Tensor:
    """The theta of grid_from_logits for a grid ending in 0 (log of its log-sigma steps)."""
    pos = sigmas[sigmas > 0].double()
    return torch.log(pos[:-1].log() - pos[1:].log())


@torch.no_grad()
def calibrate_grid(denoiser: Any, x_cal: Tensor, *, method: str, nfe: int, sigma_min: float, sigma_max: float,
                   iters: int = 20, generator: torch.Generator | None = None, reference: Tensor | None = None,
                   **options: Any) -> tuple[Tensor, dict[str, Any]]:
    """(grid, info): the grid for `method` at `nfe` calls that minimises the mean error on x_cal (starts at sigma_max)
    against the exact flow map, from the best of the method's default grid (`sample`'s, tail and knee included),
    Karras rho = 7, exponential and Karras rho = 3 grids; the search keeps the start's last nonzero sigma.

    `iters` bounds the compass-search sweeps; `generator` shuffles the coordinate order of each sweep; `reference`
    (the exact map of x_cal to sigma = 0) skips the reference solve. info: denoiser_calls (all calls spent, reference
    included), start (the standard grid started from), error_start, error, sweeps.
    """
    x_cal, options, nfe = check_start(x_cal), check_options(method, options), check_count("nfe", nfe)
    m = METHODS[method]
    if m.kind != "ODE" or m.evals_per_step is None:
        raise ValueError(f"calibrate_grid needs a fixed-step deterministic method, got {method!r}")
    steps = m.steps_for(nfe, options)
    if steps < 1:
        raise ValueError(f"nfe={nfe} is below one step of {method}")
    # first, as it checks sigma_min and sigma_max before the reference solve spends anything
    starts = {"default": budget_grid(denoiser, method, nfe, sigma_min=sigma_min, sigma_max=sigma_max, options=options),
              "karras_rho7": grids.karras(steps, sigma_min, sigma_max),
              "exponential": grids.exponential(steps, sigma_min, sigma_max),
              "karras_rho3": grids.karras(steps, sigma_min, sigma_max, rho=3.0)}
    # checked: a NaN error compares False with every other, so a NaN denoiser would return a grid as if calibrated
    D = CountingDenoiser(CheckedDenoiser(denoiser, context="calibrate_grid"))
    if reference is None:
        reference = sample_dopri5(D, x_cal, torch.tensor([sigma_max, sigma_min, 0.0]), rtol=1e-9, atol=1e-9)

    def error(grid: Tensor) -> float:
        if m.calls(grid, options) > nfe:  # a long step moved away (`common.first_order`): over budget
            return math.inf
        out = m.fn(D, x_cal, grid, **m.with_rule_options(grid, options))  # as `sample` will run it
        return float((out - reference).reshape(len(x_cal), -1).norm(dim=1).mean())

    errs = {name: error(g) for name, g in starts.items()}
    start = min(errs, key=errs.get)
    best_grid, best = starts[start], errs[start]
    low = float(best_grid[-2])  # the default grid may stop above sigma_min (its tail)
    theta, delta, sweep = logits_from_grid(best_grid), 0.5, 0
    for sweep in range(1, iters + 1 if steps > 2 else 1):
        improved = False
        for j in torch.randperm(len(theta), generator=generator).tolist():
            for sign in (1.0, -1.0):
                trial = theta.clone()
                trial[j] += sign * delta
                g = grid_from_logits(trial, low, sigma_max)
                e = error(g)
                if e < best:
                    theta, best, best_grid, improved = trial, e, g, True
                    break
        if not improved:
            delta /= 2
            if delta < 1e-3:
                break
    info = {"denoiser_calls": D.calls, "start": start, "error_start": errs[start], "error": best, "sweeps": sweep}
    return best_grid, info
