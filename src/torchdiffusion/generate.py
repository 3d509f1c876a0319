"""Draw samples from a trained model: start noise with per-sample seeds, then any registered sampler."""

from __future__ import annotations

from typing import Any, Callable

import torch

from tqdm.auto import tqdm

from .conditioning import GuidanceRecipe
from .denoiser import CountingDenoiser, check_nan_policy
from .model_denoiser import ModelDenoiser
from .nn.mode import evaluating
from .sampling import METHODS, check_options, sample
from .sampling.common import check_count

Tensor = torch.Tensor


def check_shape(shape: tuple[int, ...], num: int) -> None:
    """A per-sample shape of positive ints and a positive sample count, or a ValueError saying which."""
    if not isinstance(shape, (tuple, list)) or not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ValueError(f"shape must be a non-empty tuple of positive ints (per sample, no batch), got {shape!r}")
    if not isinstance(num, int) or isinstance(num, bool) or num < 1:
        raise ValueError(f"num must be a positive integer, got {num!r}")


def sample_generators(seed: int, num: int) -> list[torch.Generator]:
    """One generator per sample, sample i's seeded seed + i: its start noise and then its in-loop noise."""
    return [torch.Generator().manual_seed(seed + i) for i in range(num)]


def start_noise(model: ModelDenoiser, shape: tuple[int, ...], num: int, seed: int,
                dtype: torch.dtype = torch.float32, generators: list[torch.Generator] | None = None) -> Tensor:
    """x at sigma_max in VE coordinates, sample i drawn from its own generator seeded seed + i.

    The prior N(0, prior_std^2) of the process state x_T becomes N(0, (prior_std / alpha_T)^2) for x = x_T / alpha_T.
    Pass `generators` (from sample_generators) to keep drawing each sample's stream afterwards.
    """
    check_shape(shape, num)
    std = model.process.prior_std_ve()
    gens = generators if generators is not None else sample_generators(seed, num)
    rows = [torch.randn(shape, generator=g, dtype=dtype) for g in gens]
    return torch.stack(rows) * std


@torch.no_grad()
def generate(model: ModelDenoiser, shape: tuple[int, ...], num: int, *, sampler: str = "ddim", steps: int = 50,
             seed: int = 0, batch_size: int = 256, progress: bool = False, cond: dict[str, Tensor] | None = None,
             guidance: GuidanceRecipe | None = None, nfe: int | None = None, nan: str = "raise",
             callback: Callable[[dict[str, Any]], None] | None = None, **options: Any) -> tuple[Tensor, int]:
    """(num samples of the given per-sample shape, denoiser calls per sample).

    `steps` steps on the sampler's default grid, or, when nfe is given, the budget of `sample` instead (the most
    steps whose calls fit in nfe). cond holds per-sample model kwargs (num, ...) such as class_labels (the plain
    conditional model); guidance, a GuidanceRecipe with its own per-sample conditions, replaces it. nan and the
    checks of every denoiser output are `sample`'s. callback is `sample`'s, called after every step of every batch
    (e.g. a progress bar).
    """
    check_shape(shape, num)
    check_count("steps", steps)
    check_count("batch_size", batch_size)
    if isinstance(seed, bool) or not isinstance(seed, int) or not -2**63 <= seed <= 2**64 - num:
        # the seeds seed .. seed + num - 1 must all fit torch.Generator.manual_seed (64 bits, negatives wrap around)
        raise ValueError(f"seed must be an integer in [-2**63, 2**64 - num], got {seed!r}")
    check_nan_policy(nan)
    if guidance is None:
        guidance = GuidanceRecipe(cond=dict(cond or {}))
    elif cond:
        raise ValueError("give either cond or guidance (whose cond field holds the condition), not both")
    guidance.check_rows(num)
    if sampler not in METHODS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {sorted(METHODS)}")
    options = check_options(sampler, options)  # before `steps` is turned into a budget by the options' cost
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with evaluating(model):  # a refused denoiser output must not leave a training model in eval mode
        gens = sample_generators(seed, num)
        x = start_noise(model, shape, num, seed, generators=gens).to(device)
        out, calls = [], 0
        m = METHODS[sampler]
        if nfe is None and m.evals_per_step is None:  # adaptive: `steps` is its budget of denoiser calls
            nfe = steps
        elif nfe is None:  # `steps` steps on the default grid (a long step's freed calls never fit another step)
            per_step, final = m.budget(options)
            nfe = per_step * (steps - 1) + final
        for i in tqdm(range(0, num, batch_size), disable=not progress, desc="sampling", leave=False):
            counted = CountingDenoiser(guidance.denoiser(model, slice(i, i + batch_size)))
            # each sample's in-loop noise continues its own stream, so sample k is the same in any batch
            out.append(sample(counted, x[i:i + batch_size], method=sampler, nfe=nfe,
                              generator=gens[i:i + batch_size], nan=nan, callback=callback, **options).cpu())
            calls = counted.calls
    return torch.cat(out), calls
