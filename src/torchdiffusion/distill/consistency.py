"""Consistency distillation from a teacher (Song et al. 2023, Alg. 2); training without a teacher is the loss
`loss.kind: consistency` (losses/consistency.py, iCT).

The student is a ModelDenoiser with prediction "consistency" (`predictions.ConsistencyPrecond`): f(x, sigma) =
c_skip x + c_out F, with f(x, sigma_min) = x. It is sampled by the multistep consistency sampler.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..model_denoiser import ModelDenoiser
from ..losses.consistency import DISTANCES, karras_levels, pseudo_huber
from ..rng import randn
from ..train.ema import ema_decay_at, make_ema, update_ema
from .common import frozen_copy, heun_step, mean_square

Tensor = torch.Tensor


class ConsistencyDistiller:
    """Consistency distillation (Song et al. 2023, Alg. 2): one Heun step of the teacher's probability-flow ODE from
    s_{n+1} to s_n gives x_hat; the student at s_{n+1} matches the EMA target network at (x_hat, s_n). Levels are
    Karras's N levels, n uniform; the distance is pseudo-Huber (iCT's) by default, or squared L2."""

    sampler = "consistency"

    def __init__(self, teacher: Any, student: ModelDenoiser, *, levels: int = 18, target_decay: float = 0.95,
                 steps: int = 2, distance: str = "pseudo_huber", ema_decay: float = 0.999):
        if levels < 2 or not 0 <= target_decay < 1 or distance not in DISTANCES:
            raise ValueError(f"consistency distillation needs levels >= 2, target_decay in [0, 1) and distance "
                             f"pseudo_huber or l2, got {levels}, {target_decay}, {distance!r}")
        self.teacher, self.student, self.steps = teacher, student, steps
        self.target: nn.Module = frozen_copy(student)
        self.ema, self.ema_decay = make_ema(student), ema_decay  # what is sampled
        self.levels = karras_levels(levels, student.sigma_min, student.sigma_max)
        self.target_decay, self.distance = target_decay, distance

    def loss(self, x0: Tensor, generator: torch.Generator, **cond: Any) -> Tensor:
        B, N = x0.shape[0], len(self.levels)
        n = torch.randint(0, N - 1, (B,), generator=generator)
        s, s_next = self.levels[n].to(x0.device), self.levels[n + 1].to(x0.device)
        z = randn(x0.shape, generator, dtype=x0.dtype, device=x0.device)
        x_next = x0 + s_next.reshape((-1,) + (1,) * (x0.ndim - 1)).to(x0.dtype) * z
        with torch.no_grad():
            x_hat = heun_step(self.teacher, x_next, s_next, s, **cond)
            target = self.target(x_hat, s, **cond)
        out = self.student(x_next, s_next, **cond)
        if self.distance == "l2":
            return mean_square(out, target)
        return pseudo_huber(out, target)

    def after_step(self, step: int, total: int) -> None:
        update_ema(self.target, self.student, self.target_decay)  # theta- <- mu theta- + (1 - mu) theta
        update_ema(self.ema, self.student, ema_decay_at(step, self.ema_decay))

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        return {f"target.{k}": v for k, v in self.target.backbone.state_dict().items()}, {}

    def load_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        self.target.backbone.load_state_dict({k[7:]: v for k, v in tensors.items() if k.startswith("target.")})
