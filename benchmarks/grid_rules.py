"""Candidate default rules scored by `samplers_heldout.py --sweep` on the tuning seeds (docs/samplers.md,
"Held-out protocol"): each maps (model, nfe) to (method, grid, options), grid None keeping `sample`'s default for that
method, options the method's keyword options (UniPC's order)."""

from __future__ import annotations

import math
from functools import partial
from typing import Any, Callable

import torch

from torchdiffusion.denoiser import describe
from torchdiffusion.sampling import METHODS, budget, default_grid, grids

Rule = Callable[[Any, int], tuple[str, "torch.Tensor | None", dict]]


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
         method: str | Callable[[int], str] = "ipndm", table: str = "nearest", first: float | None = None,
         order: Callable[[int], int | None] | None = None, top: str = "cap",
         final: Callable[[int], int] | None = None) -> Rule:
    """tail = sigma_data f_max min(1, (decay / nfe)^power), knee = knee * sigma_data (None: no knee) on the named
    grid; method is a name or nfe -> name; table "nearest" moves the grid to the nearest table levels (a discrete
    model), "trailing" respaces the table with trailing spacing instead; order(nfe) sets UniPC's order (None: its
    default); top "cap" caps the first step at `first` in sigma after a table's top jump too (the cosine table's
    20291 -> 642: then 642 -> 214), "nocap" waives the cap where the first step already exceeds it, "skip" also
    drops the level below the jump (20291 -> the knee grid's next level after 642); final(steps) sets UniPC's
    final_order, the D's extrapolated to sigma = 0 in its last step (None: 1, landing on D)."""
    def fn(model: Any, nfe: int) -> tuple[str, torch.Tensor | None, dict]:
        name = method(nfe) if callable(method) else method
        m, info = METHODS[name], describe(model)
        # UniPC's order always explicit, so that the library's own rule (`Method.rule_options`) does not fill it
        opts = {"order": 2 if order is None or order(nfe) is None else order(nfe)} if name == "unipc" else {}
        steps = m.steps_for(nfe)
        if name == "unipc":
            opts["final_order"] = 1 if final is None else final(steps)
        if table == "trailing" and info.sigma_table is not None:
            t = info.sigma_table
            return name, grids.discrete_sigmas(t, min(steps, len(t)), "trailing"), opts
        sd = info.sigma_data
        tail = min(sd * f_max * min(1.0, (decay / nfe) ** power), info.sigma_max / 2)
        if grid == "karras":
            return name, default_grid(model, steps, info.sigma_min, info.sigma_max, "karras", max(tail, 0.0)), opts
        plain = partial(grids.exponential, knee=math.inf if knee is None else knee * sd)
        g = on_table(model, steps, tail, capped(plain, first or math.inf))
        if top in ("nocap", "skip") and first is not None and len(g) > 2 and float(g[0] / g[1]) > 1.5 * first:
            g = on_table(model, steps, tail, plain)  # the table's top jump is the long first step: no second cap
            if top == "skip":  # nor a level just below it: from sigma_max to the grid's third level
                g = on_table(model, steps + 1, tail, plain)
                g = torch.cat([g[:1], g[2:]])
        return name, g, opts
    return fn


def on_table(model: Any, steps: int, tail: float, named: Callable[..., torch.Tensor]) -> torch.Tensor:
    """The grid function `named` from sigma_max down to max(sigma_min, tail), on a discrete model moved to the
    nearest table levels; a table top level far above the next (cosine: 20291 vs 642) is followed by the grid of
    steps - 1 levels spaced from that next level (`default_grid`'s rule before the "skip" rule was chosen; kept here
    so that candidates mean what they meant when swept)."""
    info = describe(model)
    last, table = max(info.sigma_min, tail), info.sigma_table
    if table is None:
        return named(steps, last, info.sigma_max)
    gap, step = math.log(float(table[-1]) / float(table[-2])), math.log(info.sigma_max / last) / max(steps - 1, 1)
    if steps > 2 and info.sigma_max >= float(table[-1]) and gap > step and float(table[-2]) > last:
        rest = named(steps - 1, last, float(table[-2]))
        return grids.nearest_in_table(torch.cat([torch.tensor([info.sigma_max], dtype=rest.dtype), rest]), table)
    return grids.nearest_in_table(named(steps, last, info.sigma_max), table)


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
O3 = lambda below: (lambda nfe: 3 if nfe >= below else None)  # noqa: E731  UniPC order 3 from `below` calls
for tail_name, tail_args in (("tail 0.04 (20/n)^3", (0.04, 20, 10)), ("tail 0.04 (10/n)^2", (0.04, 10, 10, 2.0)),
                             ("tail 0.04 (15/n)^3", (0.04, 15, 10))):
    for order_name, order_fn in (("", None), (", order 3 from 15 calls", O3(15)), (", order 3 from 20 calls", O3(20)),
                                 (", order 3", O3(1))):
        for top in ("cap", "nocap"):
            CANDIDATES[f"unipc{order_name}, {tail_name}, knee 10, first step <= 3x"
                       f"{', no cap after a table top jump' if top == 'nocap' else ''}"] = rule(
                *tail_args, method="unipc", first=3.0, order=order_fn, top=top)
B = "unipc, order 3 from 15 calls, tail 0.04 (15/n)^3"
CANDIDATES.update({
    f"{B}, knee 10, first step <= 3x, skip the level below a table top jump": rule(
        0.04, 15, 10, method="unipc", first=3.0, order=O3(15), top="skip"),
    f"unipc, order 3 from 10 calls, tail 0.04 (15/n)^3, knee 10, first step <= 3x, no cap after a table top jump": rule(
        0.04, 15, 10, method="unipc", first=3.0, order=O3(10), top="nocap"),
    f"{B}, knee 30, first step <= 3x, no cap after a table top jump": rule(
        0.04, 15, 30, method="unipc", first=3.0, order=O3(15), top="nocap"),
    f"{B}, knee 5, first step <= 3x, no cap after a table top jump": rule(
        0.04, 15, 5, method="unipc", first=3.0, order=O3(15), top="nocap"),
    f"{B}, no knee, first step <= 3x, no cap after a table top jump": rule(
        0.04, 15, None, method="unipc", first=3.0, order=O3(15), top="nocap"),
    f"{B}, knee 10, first step <= 2x, no cap after a table top jump": rule(
        0.04, 15, 10, method="unipc", first=2.0, order=O3(15), top="nocap"),
    f"{B}, knee 10, first step <= 4x, no cap after a table top jump": rule(
        0.04, 15, 10, method="unipc", first=4.0, order=O3(15), top="nocap"),
})
for below in (5, 8, 10):
    for tail_name, tail_args in (("tail 0.04 (15/n)^3", (0.04, 15, 10)), ("tail 0.04 (10/n)^2", (0.04, 10, 10, 2.0)),
                                 ("tail 0.04 (20/n)^3", (0.04, 20, 10)), ("tail 0.04 (12/n)^3", (0.04, 12, 10))):
        CANDIDATES[f"unipc, order 3 from {below} calls, {tail_name}, knee 10, first step <= 3x, skip the level below a "
                   f"table top jump"] = rule(*tail_args, method="unipc", first=3.0, order=O3(below), top="skip")
PREVIOUS = "unipc, tail 0.04 (20/n)^3, knee 10, first step <= 3x"  # the default chosen on seeds 1000-1007
PREVIOUS_16 = ("unipc, order 3 from 10 calls, tail 0.04 (15/n)^3, knee 10, first step <= 3x, skip the level below a "
               "table top jump")  # the default chosen on 16 tuning problems ("Re-choosing the rule on 16 ...")
CHOSEN_ARGS = dict(method="unipc", first=3.0, order=O3(10), top="skip")
for f_name, f_fn in (("2", lambda n: 2), ("3", lambda n: 3), ("3 from 10 steps, else 2", lambda n: 3 if n >= 10 else 2),
                     ("3 from 15 steps, else 1", lambda n: 3 if n >= 15 else 1)):
    for tail_name, tail_args in (("tail 0.04 (15/n)^3", (0.04, 15, 10)), ("tail 0.04 (10/n)^3", (0.04, 10, 10)),
                                 ("tail 0.08 (15/n)^3", (0.08, 15, 10))):
        CANDIDATES[f"unipc, order 3 from 10 calls, {tail_name}, knee 10, first step <= 3x, skip the level below a "
                   f"table top jump, final step extrapolates {f_name} D's"] = rule(*tail_args, **CHOSEN_ARGS,
                                                                                   final=f_fn)
CHOSEN = f"{PREVIOUS_16}, final step extrapolates 3 D's"  # the library's default since (docs/samplers.md, "The step
# to sigma = 0")
