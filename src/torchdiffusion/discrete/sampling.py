"""Ancestral sampling of a discrete denoiser: x_T -> x_(t_1) -> ... -> x_0 through p(x_s | x_t), with a cache.

Each step draws x_s ~ p(x_s | x_t) = sum_x0 q(x_s | x_t, x0) p(x0 | x_t) (Austin et al. 2021, sec. 3; for masked
diffusion this is MDLM's sampler, Sahoo et al. 2024, sec. 4: each [MASK] is revealed with probability
(alpha_s - alpha_t) / (1 - alpha_t) as a draw from p(x0 | x_t)). A time-independent denoiser's prediction depends on
x_t alone, so a sequence that did not change since its last evaluation reuses it (MDLM's caching): the samples are
the same, drawn from the same noise, and the calls saved are counted in `SamplerStats`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .process import CategoricalProcess, sample_categorical

Tensor = torch.Tensor


@dataclass
class SamplerStats:
    """What a sampling run cost: denoiser calls made and skipped, and sequences (rows) evaluated and reused."""

    steps: int = 0
    calls: int = 0
    rows: int = 0
    cached_calls: int = 0  # steps where no sequence changed, so the denoiser was not called at all
    cached_rows: int = 0  # sequences whose cached prediction was reused


def time_grid(process: CategoricalProcess, steps: int | Sequence[float] | Tensor) -> Tensor:
    """The descending float64 times t_0 = t_max > ... > t_steps = 0 of a run: `steps` equal steps (rounded to integer
    steps for a discrete-time process, which needs steps <= T), or the given descending times ending at 0."""
    if isinstance(steps, int):
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        grid = torch.linspace(process.t_max, 0.0, steps + 1, dtype=torch.float64)
        if process.num_steps is not None:
            if steps > process.num_steps:
                raise ValueError(f"steps={steps} exceeds the process's T={process.num_steps}")
            grid = grid.round()
    else:
        grid = torch.as_tensor(steps, dtype=torch.float64).flatten()
    if grid.numel() < 2 or not bool((grid[1:] < grid[:-1]).all()) or float(grid[-1]) != 0.0:
        raise ValueError("the time grid must be strictly decreasing and end at 0")
    if float(grid[0]) > process.t_max:
        raise ValueError(f"the time grid starts at {float(grid[0])}, after t_max={process.t_max}")
    return grid


@torch.no_grad()
def ancestral(denoiser, x_T: Tensor, steps: int | Sequence[float] | Tensor, *, generator: torch.Generator | None = None,
              cache: bool | None = None, stats: SamplerStats | None = None,
              callback: Callable[[int, float, Tensor], None] | None = None,
              class_labels: Tensor | None = None) -> Tensor:
    """Ancestral sampling from x_T (B, L) ids down a time grid (`time_grid`) -> x_0 (B, L) ids.

    denoiser: the discrete contract, denoiser(x_t, t) -> logits of p(x0 | x_t), with `.process`; one with a
        `reverse_log_probs(x_t, prediction, s, t)` method steps through it instead of the process's.
    cache: reuse a sequence's prediction while it is unchanged (default: the denoiser's `time_independent`; a
        time-dependent denoiser's cached prediction would be stale). The noise drawn is the same either way.
    stats: filled with the calls made and saved. callback(i, t_next, x) after each step.
    class_labels: (B,) labels of a conditional denoiser (None: unconditional), handed over row by row.
    """
    process: CategoricalProcess = denoiser.process
    # a denoiser may bring its own reverse step for the prediction it returns (transition guidance, guidance.py)
    reverse = getattr(denoiser, "reverse_log_probs", None) or process.reverse_log_probs
    grid = time_grid(process, steps)
    if cache is None:
        cache = bool(getattr(denoiser, "time_independent", False))
    stats = SamplerStats() if stats is None else stats
    x, B = x_T.clone(), x_T.shape[0]
    logits: Tensor | None = None

    def cond(rows: slice | Tensor) -> dict[str, Tensor]:
        return {} if class_labels is None else {"class_labels": class_labels[rows]}

    seen = x.clone()  # the input of each row's cached prediction
    for i in range(len(grid) - 1):
        t_now, t_next = float(grid[i]), float(grid[i + 1])
        t = torch.full((B,), t_now, dtype=torch.float64, device=x.device)
        rows = torch.arange(B, device=x.device) if logits is None or not cache else \
            (x != seen).any(-1).nonzero()[:, 0]
        if logits is None or not cache:
            logits = denoiser(x, t, **cond(slice(None)))
        elif len(rows):
            logits = logits.clone()
            logits[rows] = denoiser(x[rows], t[rows], **cond(rows)).to(logits.dtype)
        stats.steps += 1
        stats.calls += int(len(rows) > 0)
        stats.cached_calls += int(len(rows) == 0)
        stats.rows += len(rows)
        stats.cached_rows += B - len(rows)
        seen = x.clone()
        log_p = reverse(x, logits, torch.full_like(t, t_next), t)
        x = sample_categorical(log_p, generator)  # the same draws whether or not the prediction was cached
        if callback is not None:
            callback(i, t_next, x)
    return x


@dataclass(frozen=True)
class DiscreteMethod:
    """A discrete sampler, its kind and its cost: at most evals_per_step denoiser calls per step (fewer cached)."""

    fn: Callable[..., Tensor]
    kind: str
    evals_per_step: int
    caches: bool = False  # whether it can skip calls for unchanged sequences

    @property
    def options(self) -> tuple[str, ...]:
        """The keyword options its function takes, from its signature (the noise, the callback and the condition are
        not options)."""
        params = inspect.signature(self.fn).parameters.values()
        return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name not in ("generator", "callback", "class_labels"))


ANCESTRAL = DiscreteMethod(ancestral, kind="ancestral", evals_per_step=1, caches=True)
