"""Classifier-free guidance and its linear relatives: negative conditioning and composition of conditions.

All three are one formula on denoised predictions, D = D(base) + sum_i w_i (D(c_i) - D(base)). Written on x0 it is
the same as on eps, v or the score: for fixed x and sigma each is affine in x0 (eps = (x - D) / sigma, score =
(D - x) / sigma^2) and the weights 1 - sum w_i + sum w_i sum to one, so the affine part cancels. Our scale w is
Ho & Salimans' 1 + w: w = 1 is the conditional model, w = 0 the unconditional one.

Cost: the branches run as one call of the model on a batch of (1 + n) * B when their kwargs stack (see batching),
and a sampler counts one call of the guided denoiser as one function evaluation (NFE), as diffusers and
k-diffusion do.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from .base import GuidedDenoiser, Output, check_scale
from .batching import evaluate_branches, expand_cond
from .interval import limited_interval
from .rescale import check_rescale, rescale_std

Tensor = torch.Tensor
Cond = Mapping[str, Any]


class LinearGuidance(GuidedDenoiser):
    """D = D(base) + sum_i w_i (D(c_i) - D(base)) (Liu et al. 2022, conjunction; Ho & Salimans 2022, eq. 6 for one c).

    With one condition the result is lerp(D(base), D(c), w), exact at w = 0 and w = 1. rescale = phi > 0 applies
    CFG-rescale against D(c_0) (one condition only). The learned-variance fraction, if any, is D(c_0)'s.
    """

    def __init__(self, denoiser: Any, conds: Sequence[Cond], scales: Sequence[float], base: Cond, *,
                 rescale: float = 0.0, rescale_space: str = "v", allow_negative: bool = False):
        super().__init__(denoiser)
        if len(conds) != len(scales):
            raise ValueError(f"got {len(conds)} conditions but {len(scales)} scales")
        self.conds, self.base = [dict(c) for c in conds], dict(base)
        self.scales = [check_scale(w, "guidance scale", allow_negative=allow_negative) for w in scales]
        self.rescale, self.rescale_space = check_rescale(rescale, rescale_space), rescale_space
        if self.rescale > 0 and len(self.conds) != 1:
            raise ValueError("rescale needs exactly one condition (its std is the reference)")

    def evaluate(self, x: Tensor, sigma: Tensor, cond: dict[str, Any], with_variance: bool) -> Output:
        B = x.shape[0]
        names = [f"cond[{i}]" for i in range(len(self.conds))] + ["uncond/negative"]
        branches = [expand_cond({**cond, **c}, B, n) for c, n in zip([*self.conds, self.base], names)]
        outs = evaluate_branches(self.denoiser, x, sigma, branches, with_variance)
        base, frac = outs[-1][0], outs[0][1]  # the variance of c_0 (of the base when there is no condition)
        if len(self.conds) == 1:
            x0 = torch.lerp(base, outs[0][0], self.scales[0])
        else:
            x0 = base
            for w, (d, _) in zip(self.scales, outs[:-1]):
                x0 = x0 + w * (d - base)
        if self.rescale > 0:
            x0 = rescale_std(x0, outs[0][0], x, sigma, self.rescale, self.rescale_space)
        return x0, frac


def classifier_free(denoiser: Any, cond: Cond, uncond: Cond, scale: float, *, rescale: float = 0.0,
                    rescale_space: str = "v", interval: tuple[float, float] | None = None) -> GuidedDenoiser:
    """D_uncond + w (D_cond - D_uncond) (Ho & Salimans 2022, eq. 6, with w = 1 + their w).

    cond / uncond: the model's kwargs for each branch, e.g. {"class_labels": y} and {"class_labels": null} with
    null == num_classes; tensors have batch B or 1 (broadcast). rescale: CFG-rescale phi (Lin et al. 2024).
    interval: (sigma_lo, sigma_hi), guide only for sigma in (sigma_lo, sigma_hi], the conditional model elsewhere
    (Kynkaenniemi et al. 2024).
    """
    guided = LinearGuidance(denoiser, [cond], [scale], uncond, rescale=rescale, rescale_space=rescale_space)
    if interval is None:
        return guided
    return limited_interval(guided, LinearGuidance(denoiser, [], [], cond), *interval)


def negative_conditioning(denoiser: Any, cond: Cond, negative: Cond, scale: float, *, rescale: float = 0.0,
                          rescale_space: str = "v",
                          interval: tuple[float, float] | None = None) -> GuidedDenoiser:
    """D_neg + w (D_cond - D_neg): CFG with the unconditional branch replaced by a negative prompt.

    interval: as in classifier_free, the plain conditional model outside (sigma_lo, sigma_hi].
    """
    return classifier_free(denoiser, cond, negative, scale, rescale=rescale, rescale_space=rescale_space,
                           interval=interval)


def composable(denoiser: Any, conds: Sequence[Cond], scales: Sequence[float], uncond: Cond) -> LinearGuidance:
    """D_uncond + sum_i w_i (D_i - D_uncond) (Liu et al. 2022, conjunction AND; a negative w_i is their NOT)."""
    return LinearGuidance(denoiser, conds, scales, uncond, allow_negative=True)
