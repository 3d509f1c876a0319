"""`solve`, the one entry point over every posterior sampler: the grid for a budget of denoiser calls, the start
noise, the option check."""

from __future__ import annotations

from typing import Any

import torch

from ..denoiser import describe
from ..registry import INVERSE as METHODS
from ..sampling.budget import default_grid
from ..sampling.common import Generators
from .common import check_generators, row_noise
from .method import check_options
from .operators import Operator

Tensor = torch.Tensor


def solve(denoiser: Any, y: Tensor, operator: Operator, *, noise_std: float, method: str = "dps", nfe: int = 100,
          sigma_min: float | None = None, sigma_max: float | None = None, x: Tensor | None = None,
          generator: Generators = None, **options: Any) -> Tensor:
    """Draws of x0 from p(x0 | y) for y = operator(x0) + noise_std n, one per row of y, with at most `nfe` denoiser
    calls per row, on the Karras grid (rho = 7) of the most levels that fit from sigma_max down to sigma_min, then 0.

    x: the start at sigma_max, (B, *shape) (B * particles rows for a particle method, row b's particles at
    b * particles ...); drawn as sigma_max * N(0, I) when None. sigma_min, sigma_max default to the denoiser's own
    (`describe`). generator: one torch.Generator for every draw, or one per row of y, which makes each row's draw
    the same whatever the batch it is solved in (as `generate` does for sampling). Options are the method's keyword options
    (`METHODS[method].options`); an unknown one is refused. The result has y's dtype and device.
    """
    m = METHODS.lookup(method)
    options = check_options(method, options)
    if not isinstance(y, Tensor) or not y.is_floating_point() or y.ndim < 1:
        raise ValueError(f"y must be a floating-point tensor (batch, ...), got {getattr(y, 'shape', type(y))}")
    if not noise_std >= 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    if nfe < 1:
        raise ValueError(f"nfe must be >= 1, got {nfe}")
    check_generators(generator, len(y))
    if not operator.linear and m.needs_linear:
        raise ValueError(f"inverse method {method!r} needs a linear measurement operator ({m.kind}: it works with "
                         f"the operator's adjoint or SVD), but {operator.nonlinear_reason}; only the gradient "
                         f"methods ({', '.join(n for n in METHODS if not METHODS[n].needs_linear)}) take it")
    shape = operator.sample_shape(y)
    info = describe(denoiser)
    s_min = info.sigma_min if sigma_min is None else float(sigma_min)
    s_max = info.sigma_max if sigma_max is None else float(sigma_max)
    steps = m.steps_for(nfe, options)
    if steps < 1 or (m.particles and steps < 2):
        raise ValueError(f"nfe={nfe} is below the cost of one step of {method} ({m.calls(2 if m.particles else 1, options)})")
    # a discrete-time model's own grid (its table, respaced) spans the whole table; a range asked for is kept by
    # moving the Karras grid on it to the nearest table levels instead (x starts at s_max either way)
    ranged = info.sigma_table is not None and (sigma_min is not None or sigma_max is not None)
    sigmas = default_grid(denoiser, steps, s_min, s_max, tail=s_min if ranged else None)
    group = options.get("particles", m.defaults().get("particles", 1)) if m.particles else 1
    rows = len(y) * group
    if x is None:
        x = s_max * row_noise(y.new_empty(rows, *shape), generator, group)
    elif tuple(x.shape) != (rows, *shape):
        raise ValueError(f"x must have shape {(rows, *shape)} (one row per {'particle' if m.particles else 'sample'}), "
                         f"got {tuple(x.shape)}")
    return m.fn(denoiser, y, operator, x.to(y), sigmas, noise_std=float(noise_std), generator=generator, **options)
