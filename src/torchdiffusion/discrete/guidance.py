"""Classifier-free guidance of a discrete denoiser: the tilted product of its conditional and unconditional p(x0 | x_t).

One network trained with labels dropped to a null class gives p(x0 | x_t, c) and p(x0 | x_t) (Ho & Salimans 2022).
Guidance at scale s mixes their log-probabilities per position,

    log p_s(x0^n | x_t, c) = s log p(x0^n | x_t, c) + (1 - s) log p(x0^n | x_t) + const,

i.e. p(x0 | x_t, c)^(1+w) p(x0 | x_t)^(-w) with w = s - 1 (Ho & Salimans 2022, eq. 6, on logits as Muse does for
masked token models, Chang et al. 2023, sec. 2.6); s = 1 is the conditional model, s = 0 the unconditional one. The
tilt is taken on the denoiser's x0 prediction, so every sampler of `discrete/` gets it unchanged; for an absorbing
kernel the resulting reverse step draws revealed tokens from the same tilted distribution as Schiff et al. 2024's
tilt of the reverse transition, only the reveal rate differs.

`TransitionGuidedDenoiser` is that other form, Schiff et al. 2024's D-CFG: the tilt is taken on the reverse step,

    log p_g(x_s^n | x_t, c) = g log p(x_s^n | x_t, c) + (1 - g) log p(x_s^n | x_t) + const,

each side the x0-parameterised step sum_x0 q(x_s | x_t, x0) p(x0 | x_t [, c]), normalised per position. For the
uniform and ordinal kernels it is a different distribution from the x0 tilt; under an absorbing kernel it also tilts
the probability of staying [MASK], so it reveals tokens at another rate.
"""

from __future__ import annotations

import torch

from .process import CategoricalProcess

Tensor = torch.Tensor

GUIDANCE_MODES = ("x0", "transition")  # tilt p(x0 | x_t) (GuidedDenoiser) or p(x_s | x_t) (TransitionGuidedDenoiser)


def check_scale(scale: float) -> float:
    """A finite guidance scale as a float; ValueError otherwise."""
    if not isinstance(scale, (int, float)) or scale != scale or abs(scale) == float("inf"):
        raise ValueError(f"guidance scale must be a finite number, got {scale!r}")
    return float(scale)


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


class _ClassifierFree:
    """What both guidance modes share: the inner conditional denoiser, its process and the scale; two calls a step,
    one with the given labels and one with none (the null label); other attributes are the inner denoiser's."""

    def __init__(self, denoiser, scale: float):
        self.inner, self.scale = denoiser, check_scale(scale)
        self.process: CategoricalProcess = denoiser.process
        self.time_independent = bool(getattr(denoiser, "time_independent", False))

    def both(self, x_t: Tensor, t: Tensor, class_labels: Tensor | None) -> tuple[Tensor, Tensor]:
        """(conditional, unconditional) logits of the inner denoiser."""
        if class_labels is None:
            raise ValueError("classifier-free guidance needs class labels (B,) to guide towards")
        return self.inner(x_t, t, class_labels=class_labels), self.inner(x_t, t)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


class GuidedDenoiser(_ClassifierFree):
    """A conditional discrete denoiser under classifier-free guidance at scale s: two calls per step, one with the
    given labels, one with none (the null label) -> logits (B, L, K) of the tilted p_s(x0 | x_t, c)."""

    def __call__(self, x_t: Tensor, t: Tensor, class_labels: Tensor | None = None) -> Tensor:
        cond, uncond = self.both(x_t, t, class_labels)
        x0_log_probs = self.process.x0_log_probs
        return tilted_log_probs(x0_log_probs(cond), x0_log_probs(uncond), self.scale)


class TransitionGuidedDenoiser(_ClassifierFree):
    """Classifier-free guidance of the reverse transition (Schiff et al. 2024, D-CFG) at scale g: two calls per step.

    Its prediction is the pair (conditional, unconditional) of the inner denoiser's logits, stacked (B, L, 2, K), and
    the sampler turns it into a step with `reverse_log_probs` (discrete/sampling.py asks a denoiser for its own
    reverse step before the process's); it is therefore a sampler's denoiser, not one a bound can score.
    """

    def __call__(self, x_t: Tensor, t: Tensor, class_labels: Tensor | None = None) -> Tensor:
        cond, uncond = self.both(x_t, t, class_labels)
        return torch.stack([cond, uncond.to(cond.dtype)], dim=-2)  # (B, L, 2, K)

    def reverse_log_probs(self, x_t: Tensor, prediction: Tensor, s: Tensor, t: Tensor) -> Tensor:
        """log p_g(x_s | x_t, c) (B, L, K): the tilted product of the conditional and unconditional reverse steps;
        g = 1 returns the conditional step itself."""
        log_cond = self.process.reverse_log_probs(x_t, prediction[..., 0, :], s, t)
        if self.scale == 1.0:
            return log_cond
        log_uncond = self.process.reverse_log_probs(x_t, prediction[..., 1, :], s, t)
        return tilted_log_probs(log_cond, log_uncond, self.scale)


def guided_denoiser(denoiser, scale: float, mode: str = "x0"):
    """The denoiser under classifier-free guidance at `scale`: mode "x0" tilts p(x0 | x_t) (GuidedDenoiser),
    "transition" the reverse step p(x_s | x_t) (TransitionGuidedDenoiser)."""
    if mode == "x0":
        return GuidedDenoiser(denoiser, scale)
    if mode == "transition":
        return TransitionGuidedDenoiser(denoiser, scale)
    raise ValueError(f"guidance mode must be one of {', '.join(GUIDANCE_MODES)}, got {mode!r}")
