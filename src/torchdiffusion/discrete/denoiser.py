"""The discrete denoiser contract: D(x_t, t) -> logits of p(x0 | x_t), and the wrappers samplers may be handed.

A discrete denoiser takes token ids x_t (B, L) and times t (B,) in its process's units (integer steps 0..T, or
[0, 1] in continuous time) and returns logits (B, L, K) of p(x0^n | x_t) per position. It declares the
`CategoricalProcess` it belongs to (samplers and bounds read the kernel from it) and whether its prediction ignores
t (`time_independent`: a sampler may then reuse a prediction while x_t does not change, Sahoo et al. 2024).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from .masked import subs_logits
from .process import CategoricalProcess

Tensor = torch.Tensor


class DiscreteDenoiser(Protocol):
    """logits of p(x0 | x_t): x_t (B, L) long, t (B,) -> (B, L, K), with its process and time dependence."""

    process: CategoricalProcess
    time_independent: bool

    def __call__(self, x_t: Tensor, t: Tensor, class_labels: Tensor | None = None) -> Tensor: ...


class BackboneDenoiser(nn.Module):
    """A sequence backbone (x (B, L), noise_level (B,)) -> (B, L, K) as a discrete denoiser.

    The backbone sees the noise level 1000 t / t_max (the DDPM step-index scale its sinusoidal embedding expects).
    Under an absorbing process the logits go through SUBS (no mass on [MASK], unmasked tokens carried over).
    """

    def __init__(self, backbone: nn.Module, process: CategoricalProcess, subs: bool | None = None):
        super().__init__()
        self.backbone, self.process = backbone, process
        self.subs = process.mask_id is not None if subs is None else subs
        config = getattr(backbone, "config", None)
        # without a time input the prediction cannot depend on t
        self.time_independent = not getattr(config, "time_conditioning", True)

    @property
    def num_classes(self) -> int:
        """Classes the backbone is conditioned on (0: unconditional); label == num_classes is the null label."""
        return int(getattr(getattr(self.backbone, "config", None), "num_classes", 0))

    def forward(self, x_t: Tensor, t: Tensor, class_labels: Tensor | None = None) -> Tensor:
        """x_t (B, L) ids, t (B,), class_labels (B,) (None: unconditional, the null label) -> logits (B, L, K)."""
        noise_level = (1000.0 * torch.as_tensor(t, device=x_t.device).float() / self.process.t_max)
        cond = {} if class_labels is None else {"class_labels": class_labels.to(x_t.device)}
        logits = self.backbone(x_t, noise_level, **cond)
        if self.subs:
            logits = subs_logits(logits, x_t, self.process.mask_id)
        return logits


class CountingDenoiser:
    """Wraps a discrete denoiser and counts its calls and the rows (sequences) it was asked for."""

    def __init__(self, denoiser: DiscreteDenoiser):
        self.inner, self.calls, self.rows = denoiser, 0, 0

    def __call__(self, x_t: Tensor, t: Tensor, **cond: Tensor) -> Tensor:
        self.calls += 1
        self.rows += x_t.shape[0]
        return self.inner(x_t, t, **cond)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)
