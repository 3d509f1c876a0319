"""Progressive distillation (Salimans & Ho 2022, Alg. 2): a student learns to take in one DDIM step what its
teacher takes in two; each round halves the number of steps and the student becomes the next round's teacher.

Steps live on the few-step grid (`sampling.grids.fewstep`), whose grids of N and 2N steps nest, so the student's
step s_i -> s_{i+1} spans the teacher's s_i -> s_mid -> s_{i+1}.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..model_denoiser import ModelDenoiser
from ..rng import randn
from ..sampling.grids import fewstep
from ..train.ema import ema_decay_at, make_ema, update_ema
from .common import ddim_step, frozen_copy

Tensor = torch.Tensor


def progressive_target(teacher: Any, z: Tensor, s: Tensor, s_mid: Tensor, s_next: Tensor, **cond: Any) -> Tensor:
    """x0_tilde such that one DDIM step of the student from (z, s) to s_next lands where two teacher DDIM steps land
    (Salimans & Ho 2022, Alg. 2): x0_tilde = (z'' - (s_next / s) z) / (1 - s_next / s), in VE coordinates."""
    z1 = ddim_step(teacher, z, s, s_mid, **cond)
    z2 = ddim_step(teacher, z1, s_mid, s_next, **cond)
    ratio = (s_next / s).reshape((-1,) + (1,) * (z.ndim - 1)).to(z.dtype)
    return (z2 - ratio * z) / (1 - ratio)


class ProgressiveDistiller:
    """Rounds of halving from start_steps down to final_steps; the training steps are shared equally by the rounds.
    The loss is the x0 error weighted by Salimans & Ho's truncated SNR, max(1 / sigma^2, 1) (sec. 4)."""

    sampler = "ddim_fewstep"

    def __init__(self, teacher: Any, student: ModelDenoiser, *, start_steps: int = 64, final_steps: int = 1,
                 ema_decay: float = 0.999):
        rounds = math.log2(start_steps / final_steps) if start_steps >= final_steps >= 1 else -1
        if rounds < 1 or rounds != int(rounds):
            raise ValueError(f"progressive distillation halves the steps: start_steps ({start_steps}) must be "
                             f"final_steps ({final_steps}) times a power of 2, at least 2")
        self.original, self.student = teacher, student
        self.start_steps, self.final_steps, self.rounds = start_steps, final_steps, int(rounds)
        self.ema_decay, self.round = ema_decay, 0
        self.teacher: Any = teacher
        self.ema = make_ema(student)  # what becomes the next teacher and what is sampled
        self.snapshots: dict[int, dict[str, Tensor]] = {}  # student steps -> EMA weights at the end of its round

    @property
    def steps(self) -> int:
        """The student's steps in the current round (the teacher takes twice as many)."""
        return self.start_steps // 2 ** (self.round + 1)

    def loss(self, x0: Tensor, generator: torch.Generator, **cond: Any) -> Tensor:
        N, B = self.steps, x0.shape[0]
        smax = self.student.sigma_max
        g_student, g_teacher = fewstep(N, 0.0, smax), fewstep(2 * N, 0.0, smax)
        i = torch.randint(0, N, (B,), generator=generator)
        s, s_mid, s_next = g_student[i], g_teacher[2 * i + 1], g_student[i + 1]
        s, s_mid, s_next = (v.to(x0.device) for v in (s, s_mid, s_next))
        z = x0 + s.reshape((-1,) + (1,) * (x0.ndim - 1)).to(x0.dtype) * randn(x0.shape, generator, dtype=x0.dtype,
                                                                              device=x0.device)
        with torch.no_grad():
            target = progressive_target(self.teacher, z, s, s_mid, s_next, **cond)
        out = self.student(z, s, **cond)
        w = torch.clamp(1 / s**2, min=1.0).to(out.dtype)  # truncated SNR on the x0 error
        return w * (out - target).pow(2).flatten(1).mean(1)

    def after_step(self, step: int, total: int) -> None:
        update_ema(self.ema, self.student, ema_decay_at(step - self._round_start(total), self.ema_decay))
        if self.round < self.rounds - 1 and step >= self._round_start(total, self.round + 1):
            self._next_round()

    def _round_start(self, total: int, r: int | None = None) -> int:
        return (self.round if r is None else r) * total // self.rounds

    def _next_round(self) -> None:
        """The student's EMA becomes the teacher of half as many steps; the student goes on from its weights."""
        self.snapshots[self.steps] = {k: v.clone() for k, v in self.ema.backbone.state_dict().items()}
        self.teacher = frozen_copy(self.ema)
        self.round += 1

    def finish(self) -> None:
        """Record the last round's student (called when training ends)."""
        self.snapshots[self.steps] = {k: v.clone() for k, v in self.ema.backbone.state_dict().items()}

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors = {}
        if self.round > 0:  # the teacher of this round (the EMA student at the end of the last)
            tensors = {f"teacher.{k}": v for k, v in self.teacher.backbone.state_dict().items()}
        return tensors, {"round": self.round}

    def load_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        self.round = int(meta["round"])
        if self.round > 0:
            self.teacher = frozen_copy(self.ema)
            self.teacher.backbone.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("teacher.")})
