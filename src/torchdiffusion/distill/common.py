"""What every distillation method shares: the student's loss contract, per-sample distances, teacher steps."""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn

from ..denoiser import sigma_batch

Tensor = torch.Tensor


class Distiller(Protocol):
    """One distillation method bound to a teacher and a student (a ModelDenoiser being trained).

    loss(x0, generator, **cond) -> per-sample loss (B,) at the current state; after_step(step, total) updates the
    method's own state once the optimizer has stepped (EMA of the student, EMA target, round); `ema` is the averaged
    student that is sampled; sampler and steps say how (N steps = N network evaluations); state() / load_state()
    carry the rest of the method's state through a checkpoint."""

    student: nn.Module
    ema: nn.Module
    sampler: str
    steps: int

    def loss(self, x0: Tensor, generator: torch.Generator, **cond: Any) -> Tensor: ...

    def after_step(self, step: int, total: int) -> None: ...

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]: ...

    def load_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None: ...


def mean_square(a: Tensor, b: Tensor) -> Tensor:
    """Mean squared difference per sample, (B,)."""
    return (a - b).pow(2).flatten(1).mean(1)


def heun_step(denoiser: Any, x: Tensor, sigma: Tensor, sigma_next: Tensor, **cond: Any) -> Tensor:
    """One Heun step of the probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma from sigma to sigma_next > 0,
    per-sample levels (B,) (Karras et al. 2022, Alg. 1)."""
    s, s_next = sigma_batch(sigma, x), sigma_batch(sigma_next, x)
    shape = (-1,) + (1,) * (x.ndim - 1)
    h = (s_next - s).reshape(shape).to(x.dtype)
    d = (x - denoiser(x, s, **cond)) / s.reshape(shape).to(x.dtype)
    x_euler = x + h * d
    d_next = (x_euler - denoiser(x_euler, s_next, **cond)) / s_next.reshape(shape).to(x.dtype)
    return x + h * (d + d_next) / 2


def ddim_step(denoiser: Any, x: Tensor, sigma: Tensor, sigma_next: Tensor, **cond: Any) -> Tensor:
    """Deterministic DDIM step x' = D + (sigma' / sigma)(x - D) (Song, Meng & Ermon 2021, eq. 12 with eta = 0, in VE
    coordinates), per-sample levels (B,)."""
    s, s_next = sigma_batch(sigma, x), sigma_batch(sigma_next, x)
    ratio = (s_next / s).reshape((-1,) + (1,) * (x.ndim - 1)).to(x.dtype)
    x0 = denoiser(x, s, **cond)
    return x0 + ratio * (x - x0)


def frozen_copy(model: nn.Module) -> nn.Module:
    """A copy of the model in eval mode with gradients off: a teacher or a target network."""
    import copy

    out = copy.deepcopy(model).eval()
    for p in out.parameters():
        p.requires_grad_(False)
    return out
