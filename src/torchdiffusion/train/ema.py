"""Exponential moving average of model weights with warm-up."""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_decay_at(step: int, decay: float) -> float:
    """min(decay, (1 + n) / (10 + n)): short memory early in training (Tarvainen & Valpola 2017; TF's EMA)."""
    return min(decay, (1 + step) / (10 + step))


def make_ema(model: nn.Module) -> nn.Module:
    """A frozen copy of the model that holds the averaged weights."""
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    return ema


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, parameters and buffers alike."""
    ep = list(ema.parameters()) + list(ema.buffers())
    mp = list(model.parameters()) + list(model.buffers())
    floats = [(e, m) for e, m in zip(ep, mp) if e.is_floating_point()]
    torch._foreach_lerp_([e for e, _ in floats], [m for _, m in floats], 1.0 - decay)


@torch.no_grad()
def update_ema_from(ema: nn.Module, tensors: dict[str, torch.Tensor], decay: float) -> None:
    """update_ema with the model given as whole tensors by name (e.g. gathered from FSDP shards)."""
    pairs = [(e, tensors[n]) for n, e in [*ema.named_parameters(), *ema.named_buffers()] if e.is_floating_point()]
    torch._foreach_lerp_([e for e, _ in pairs], [m.to(e.device) for e, m in pairs], 1.0 - decay)
