"""Classifier-free guidance of a discrete denoiser: the tilted product of its conditional and unconditional p(x0 | x_t).

One network trained with labels dropped to a null class gives p(x0 | x_t, c) and p(x0 | x_t) (Ho & Salimans 2022).
Guidance at scale s mixes their log-probabilities per position,

    log p_s(x0^n | x_t, c) = s log p(x0^n | x_t, c) + (1 - s) log p(x0^n | x_t) + const,

i.e. p(x0 | x_t, c)^(1+w) p(x0 | x_t)^(-w) with w = s - 1 (Ho & Salimans 2022, eq. 6, on logits as Muse does for
masked token models, Chang et al. 2023, sec. 2.6); s = 1 is the conditional model, s = 0 the unconditional one. The
tilt is taken on the denoiser's x0 prediction, so every sampler of `discrete/` gets it unchanged; for an absorbing
kernel the resulting reverse step draws revealed tokens from the same tilted distribution as Schiff et al. 2024's
tilt of the reverse transition (their eq. 9), only the reveal rate differs.
"""

from __future__ import annotations

import torch

from .process import CategoricalProcess

Tensor = torch.Tensor


def tilted_log_probs(log_cond: Tensor, log_uncond: Tensor, scale: float) -> Tensor:
    """s log p_c + (1 - s) log p_u, normalised over the last axis -> (..., K) log-probabilities.

    A class either model gives no mass stays impossible (for s > 1 the power p_u^(1 - s) of a zero would be
    infinite); a row where the two supports do not meet keeps the conditional distribution.
    """
    both = torch.isfinite(log_cond) & torch.isfinite(log_uncond)
    mixed = torch.where(both, scale * log_cond + (1 - scale) * torch.where(both, log_uncond, 0.0),
                        torch.full_like(log_cond, -torch.inf))
    empty = ~both.any(-1, keepdim=True)
    mixed = torch.where(empty, log_cond, mixed)
    return torch.log_softmax(mixed, dim=-1)


class GuidedDenoiser:
    """A conditional discrete denoiser under classifier-free guidance at scale s: two calls per step, one with the
    given labels, one with none (the null label) -> logits (B, L, K) of the tilted p_s(x0 | x_t, c)."""

    def __init__(self, denoiser, scale: float):
        if not isinstance(scale, (int, float)) or scale != scale or abs(scale) == float("inf"):
            raise ValueError(f"guidance scale must be a finite number, got {scale!r}")
        self.inner, self.scale = denoiser, float(scale)
        self.process: CategoricalProcess = denoiser.process
        self.time_independent = bool(getattr(denoiser, "time_independent", False))

    def __call__(self, x_t: Tensor, t: Tensor, class_labels: Tensor | None = None) -> Tensor:
        if class_labels is None:
            raise ValueError("classifier-free guidance needs class labels (B,) to guide towards")
        x0_log_probs = self.process.x0_log_probs
        log_cond = x0_log_probs(self.inner(x_t, t, class_labels=class_labels))
        log_uncond = x0_log_probs(self.inner(x_t, t))
        return tilted_log_probs(log_cond, log_uncond, self.scale)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)
