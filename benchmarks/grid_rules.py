"""Candidate default rules scored by `samplers_heldout.py --sweep` on the tuning seeds (docs/samplers.md,
"Held-out protocol"): each maps (model, nfe) to (method, grid), grid None keeping `sample`'s default for that method."""

from __future__ import annotations

import math
from functools import partial
from typing import Any, Callable

import torch

from torchdiffusion.denoiser import describe
from torchdiffusion.sampling import METHODS, budget, default_grid, grids

Rule = Callable[[Any, int], tuple[str, "torch.Tensor | None"]]


def capped(named: Callable[..., torch.Tensor], first: float) -> Callable[..., torch.Tensor]:
    """A grid whose first step is at most a factor `first` in sigma: sigma_max, then the named grid of n - 1 levels
    from max(sigma_max / first, its own second level) down."""
    def fn(n: int, lo: float, hi: float) -> torch.Tensor:
        g = named(n, lo, hi)
        if n < 3 or float(g[0] / g[1]) <= first:
            return g
        rest = named(n - 1, lo, hi / first)
        return torch.cat([g[:1], rest])
    return fn


def rule(f_max: float, decay: float, knee: float | None, power: float = 3.0, grid: str = "exponential",
         method: str | Callable[[int], str] = "ipndm", table: str = "nearest", first: float | None = None) -> Rule:
    """tail = sigma_data f_max min(1, (decay / nfe)^power), knee = knee * sigma_data (None: no knee) on the named
    grid; method is a name or nfe -> name; table "nearest" moves the grid to the nearest table levels (a discrete
    model), "trailing" respaces the table with trailing spacing instead."""
    def fn(model: Any, nfe: int) -> tuple[str, torch.Tensor | None]:
        name = method(nfe) if callable(method) else method
        m, info = METHODS[name], describe(model)
        steps = m.steps_for(nfe)
        if table == "trailing" and info.sigma_table is not None:
            t = info.sigma_table
            return name, grids.discrete_sigmas(t, min(steps, len(t)), "trailing")
        sd = info.sigma_data
        tail = min(sd * f_max * min(1.0, (decay / nfe) ** power), info.sigma_max / 2)
        if grid == "karras":
            return name, default_grid(model, steps, info.sigma_min, info.sigma_max, "karras", max(tail, 0.0))
        named = capped(partial(grids.exponential, knee=math.inf if knee is None else knee * sd), first or math.inf)
        saved = budget.GRIDS["exponential"]
        budget.GRIDS["exponential"] = named  # default_grid's table handling, on this rule's grid
        try:
            return name, default_grid(model, steps, info.sigma_min, info.sigma_max, "exponential", max(tail, 0.0))
        finally:
            budget.GRIDS["exponential"] = saved
    return fn


def low(name_low: str, name_high: str, below: int = 15) -> Callable[[int], str]:
    """name_low at budgets below `below` calls, name_high from there."""
    return lambda nfe: name_low if nfe < below else name_high


CANDIDATES: dict[str, Rule] = {
    "current: ipndm, tail 0.04 (20/n)^3, knee 10": rule(0.04, 20, 10),
    "ipndm, tail 0.04 (20/n)^3, knee 100": rule(0.04, 20, 100),
    "ipndm, tail 0.04 (20/n)^3, no knee": rule(0.04, 20, None),
    "unipc, tail 0.04 (20/n)^3, no knee": rule(0.04, 20, None, method="unipc"),
    "unipc, tail 0.04 (20/n)^3, knee 30": rule(0.04, 20, 30, method="unipc"),
    "ipndm, tail 0.04 (20/n)^3, knee 30": rule(0.04, 20, 30),
    "ipndm, tail 0.02 (20/n)^3, no knee": rule(0.02, 20, None),
    "ipndm, karras rho 7, tail 0.04 (20/n)^3": rule(0.04, 20, None, grid="karras"),
    "unipc, tail 0.02 (20/n)^3, no knee": rule(0.02, 20, None, method="unipc"),
    "unipc, karras rho 7, tail 0.04 (20/n)^3": rule(0.04, 20, None, grid="karras", method="unipc"),
    "dpmpp_3m <15 else ipndm, tail 0.04 (20/n)^3, no knee": rule(0.04, 20, None, method=low("dpmpp_3m", "ipndm")),
    "ipndm, no knee, table trailing": rule(0.04, 20, None, table="trailing"),
    "unipc, no knee, table trailing": rule(0.04, 20, None, method="unipc", table="trailing"),
}
for r in (3.0, 5.0):
    for k in (10, 30):
        for meth in ("ipndm", "unipc"):
            CANDIDATES[f"{meth}, tail 0.04 (20/n)^3, knee {k}, first step <= {r:g}x"] = rule(0.04, 20, k, method=meth,
                                                                                          first=r)
        CANDIDATES[f"unipc <15 else ipndm, tail 0.04 (20/n)^3, knee {k}, first step <= {r:g}x"] = rule(
            0.04, 20, k, method=low("unipc", "ipndm"), first=r)
CANDIDATES.update({
    "unipc, tail 0.04 (20/n)^3, knee 10, first step <= 2x": rule(0.04, 20, 10, method="unipc", first=2.0),
    "unipc, tail 0.02 (20/n)^3, knee 10, first step <= 3x": rule(0.02, 20, 10, method="unipc", first=3.0),
    "unipc, tail 0.08 (20/n)^3, knee 10, first step <= 3x": rule(0.08, 20, 10, method="unipc", first=3.0),
    "unipc, tail 0.04 (30/n)^3, knee 10, first step <= 3x": rule(0.04, 30, 10, method="unipc", first=3.0),
    "unipc, tail 0.04 (10/n)^2, knee 10, first step <= 3x": rule(0.04, 10, 10, 2.0, method="unipc", first=3.0),
    "unipc, tail 0.04 (20/n)^3, knee 5, first step <= 3x": rule(0.04, 20, 5, method="unipc", first=3.0),
    "unipc <40 else dpmpp_3m, tail 0.04 (20/n)^3, knee 10, first step <= 3x": rule(
        0.04, 20, 10, method=low("unipc", "dpmpp_3m", 40), first=3.0),
    "unipc <40 else ipndm, tail 0.04 (20/n)^3, knee 10, first step <= 3x": rule(
        0.04, 20, 10, method=low("unipc", "ipndm", 40), first=3.0),
})
CHOSEN = "unipc, tail 0.04 (20/n)^3, knee 10, first step <= 3x"  # the library's default since (docs/samplers.md)
