"""Draw samples from a trained model: start noise with per-sample seeds, then any registered sampler."""

from __future__ import annotations

from typing import Any

import torch

from tqdm.auto import tqdm

from .conditioning import GuidanceRecipe
from .denoiser import CountingDenoiser, ModelDenoiser
from .sampling import METHODS, sample

Tensor = torch.Tensor


def start_noise(model: ModelDenoiser, shape: tuple[int, ...], num: int, seed: int,
                dtype: torch.dtype = torch.float32) -> Tensor:
    """x at sigma_max in VE coordinates, sample i drawn from its own generator seeded seed + i.

    The prior N(0, prior_std^2) of the process state x_T becomes N(0, (prior_std / alpha_T)^2) for x = x_T / alpha_T.
    """
    p = model.process
    std = p.prior_std() / float(p.alpha(torch.tensor(p.t_max, dtype=torch.float64)))
    rows = [torch.randn(shape, generator=torch.Generator().manual_seed(seed + i), dtype=dtype) for i in range(num)]
    return torch.stack(rows) * std


@torch.no_grad()
def generate(model: ModelDenoiser, shape: tuple[int, ...], num: int, *, sampler: str = "ddim", steps: int = 50,
             seed: int = 0, batch_size: int = 256, progress: bool = False, cond: dict[str, Tensor] | None = None,
             guidance: GuidanceRecipe | None = None, **options: Any) -> tuple[Tensor, int]:
    """(num samples of the given per-sample shape, denoiser calls per sample).

    cond holds per-sample model kwargs (num, ...) such as class_labels (the plain conditional model);
    guidance, a GuidanceRecipe with its own per-sample conditions, replaces it.
    """
    if guidance is None:
        guidance = GuidanceRecipe(cond=dict(cond or {}))
    elif cond:
        raise ValueError("give either cond or guidance (whose cond field holds the condition), not both")
    guidance.check_rows(num)
    if sampler not in METHODS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {sorted(METHODS)}")
    was_training = model.training
    model.eval()
    x = start_noise(model, shape, num, seed)
    out, calls = [], 0
    m = METHODS[sampler]
    if m.evals_per_step is None:  # adaptive: `steps` is its budget of denoiser calls
        nfe = steps
    else:  # exactly `steps` steps on the default grid
        per_step, final = m.budget(options)
        nfe = per_step * (steps - 1) + final
    gen = torch.Generator().manual_seed(seed + 10**9)  # in-loop noise of stochastic samplers
    for i in tqdm(range(0, num, batch_size), disable=not progress, desc="sampling", leave=False):
        counted = CountingDenoiser(guidance.denoiser(model, slice(i, i + batch_size)))
        out.append(sample(counted, x[i:i + batch_size], method=sampler, nfe=nfe, generator=gen, **options))
        calls = counted.calls
    model.train(was_training)
    return torch.cat(out), calls
