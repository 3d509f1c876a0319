"""The distillation loop: AdamW on the student's per-sample loss, clipped, with a step and CPU-time budget."""

from __future__ import annotations

import math
import time
from typing import Callable

import torch

from .common import Distiller

Tensor = torch.Tensor
# (n, generator) -> (x0 (n, ...), cond dict of per-sample tensors)
Draw = Callable[[int, torch.Generator], tuple[Tensor, dict[str, Tensor]]]


def fit(distiller: Distiller, draw: Draw, optimizer: torch.optim.Optimizer, *, total: int, start: int = 0,
        batch_size: int = 256, generator: torch.Generator, grad_clip: float = 1.0,
        max_cpu_minutes: float | None = None, on_step: Callable[[int, dict[str, float]], None] | None = None,
        progress: bool = False, bf16: bool = False) -> int:
    """Train from step `start` until `total` steps or the CPU budget; returns the step reached. Each step draws a
    batch, takes the distiller's mean loss (under CPU bfloat16 autocast with bf16, as `train` does), clips the
    gradient norm and steps; a non-finite loss is an error."""
    from tqdm.auto import tqdm

    cpu_deadline = time.process_time() + 60 * max_cpu_minutes if max_cpu_minutes else None
    params = [p for p in distiller.student.parameters() if p.requires_grad]
    step = start
    with tqdm(total=total, initial=start, disable=not progress, desc="distilling", dynamic_ncols=True) as bar:
        while step < total and (cpu_deadline is None or time.process_time() < cpu_deadline):
            x0, cond = draw(batch_size, generator)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = distiller.loss(x0, generator, **cond).float().mean()
            if not math.isfinite(float(loss.detach())):
                raise ValueError(f"distillation loss became {float(loss.detach())} at step {step + 1}; lower the "
                                 f"learning rate")
            loss.backward()
            gn = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else float("inf"))
            optimizer.step()
            step += 1
            distiller.after_step(step, total)
            bar.update(1)
            if on_step is not None:
                on_step(step, {"loss": float(loss.detach()), "grad_norm": float(gn)})
    return step
