"""Candidate default-grid rules scored by `samplers_heldout.py --sweep` on the tuning seeds (docs/samplers.md,
"Held-out protocol"): each maps (model, method, nfe) to a grid, or None to keep `sample`'s default."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from torchdiffusion.sampling import METHODS, default_grid

EXPONENTIAL = ("ipndm", "unipc", "dpmpp_2m", "dpmpp_3m")


def rule(f_max: float, decay: float, knee: float | None, power: float = 3.0,
         grid: str = "exponential") -> Callable[[Any, str, int], Any]:
    """tail = sigma_data f_max min(1, (decay / nfe)^power), knee = knee * sigma_data (None: log-uniform), for the
    exponential-family methods; the others keep the current default."""
    def fn(model: Any, method: str, nfe: int) -> torch.Tensor | None:
        if method not in EXPONENTIAL:
            return None
        sd = model.sigma_data
        tail = sd * f_max * min(1.0, (decay / nfe) ** power)
        return default_grid(model, METHODS[method].steps_for(nfe), model.sigma_min, model.sigma_max, grid,
                            max(tail, 0.0), None if knee is None else knee * sd)
    return fn


CANDIDATES = {
    "current: tail 0.04 (20/n)^3, knee 10": rule(0.04, 20, 10),
    "tail 0.02 (20/n)^3, knee 10": rule(0.02, 20, 10),
    "tail 0.01 (20/n)^3, knee 10": rule(0.01, 20, 10),
    "tail 0, knee 10": rule(0.0, 20, 10),
    "tail 0.04 (20/n)^3, knee 30": rule(0.04, 20, 30),
    "tail 0.02 (20/n)^3, knee 30": rule(0.02, 20, 30),
    "tail 0.04 (20/n)^3, no knee": rule(0.04, 20, None),
    "tail 0.02 (10/n)^2, knee 10": rule(0.02, 10, 10, 2.0),
    "karras rho 7, tail 0.04 (20/n)^3": rule(0.04, 20, None, grid="karras"),
    "karras rho 7, tail 0.01 (20/n)^3": rule(0.01, 20, None, grid="karras"),
}
