"""What a sampling request asks for: per-sample conditions and the guidance wrappers to put on the model.

`GuidanceRecipe.denoiser(model, rows)` builds, for one batch of rows, the Denoiser -> Denoiser stack of
`torchdiffusion.guidance`: classifier-free guidance (or negative conditioning), then classifier guidance,
then thresholding of x0 (Saharia et al. 2022), so that every sampler gets all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

import torch

from .denoiser import Conditioned
from .guidance import (classifier_free, classifier_guidance, classifier_log_prob, limited_interval,
                       negative_conditioning, thresholded)

Tensor = torch.Tensor
Cond = dict[str, Tensor]


def _rows(cond: Cond | None, rows: slice) -> Cond | None:
    return None if cond is None else {k: v[rows] for k, v in cond.items()}


@dataclass
class GuidanceRecipe:
    """Conditions hold one row per sample (num, ...); scale 1 without a negative is the plain conditional model."""

    cond: Cond = field(default_factory=dict)          # model kwargs of the requested condition
    uncond: Cond | None = None                        # the null condition (needed for scale != 1)
    negative: Cond | None = None                      # replaces uncond in the guidance formula
    scale: float = 1.0                                # w: D_u + w (D_c - D_u)
    rescale: float = 0.0                              # CFG-rescale phi (Lin et al. 2024)
    interval: tuple[float, float] | None = None       # guide (CFG and classifier) only for sigma in (lo, hi]
                                                      # (Kynkaanniemi et al. 2024)
    threshold: str | None = None                      # static | dynamic on x0
    classifier: Callable[[Tensor, Tensor], Tensor] | None = None  # logits_fn(x, sigma) in VE coordinates
    classifier_labels: Tensor | None = None           # (num,) targets of classifier guidance
    classifier_scale: float = 0.0

    def __post_init__(self) -> None:
        if (self.scale != 1.0 or self.rescale > 0) and self.uncond is None and self.negative is None:
            raise ValueError("a guidance scale != 1 (or rescale) needs an unconditional or negative condition; "
                             "is the model conditional (num_classes / context_dim > 0)?")
        if self.classifier is not None and self.classifier_labels is None:
            raise ValueError("classifier guidance needs classifier_labels (one target class per sample)")
        if self.threshold not in (None, "static", "dynamic"):
            raise ValueError(f"threshold must be 'static' or 'dynamic', got {self.threshold!r}")

    def check_rows(self, num: int) -> None:
        """Every per-sample tensor must have num rows."""
        for name, c in (("cond", self.cond), ("uncond", self.uncond), ("negative", self.negative),
                        ("classifier_labels", {"": self.classifier_labels} if self.classifier is not None else None)):
            for k, v in (c or {}).items():
                if v.shape[0] != num:
                    raise ValueError(f"{name}{'[' + repr(k) + ']' if k else ''} has {v.shape[0]} rows but "
                                     f"num = {num}; give one row per sample")

    def repeat_rows(self, k: int) -> GuidanceRecipe:
        """The recipe with each sample's row repeated k times in place (row b -> rows b k .. b k + k - 1), for a
        method that carries k particles per sample."""
        rep = lambda c: None if c is None else {n: v.repeat_interleave(k, 0) for n, v in c.items()}  # noqa: E731
        labels = None if self.classifier_labels is None else self.classifier_labels.repeat_interleave(k, 0)
        return replace(self, cond=rep(self.cond), uncond=rep(self.uncond), negative=rep(self.negative),
                       classifier_labels=labels)

    def denoiser(self, model: Any, rows: slice) -> Any:
        """The guided denoiser for the samples in `rows`."""
        c = _rows(self.cond, rows) or {}
        if self.negative is not None:
            d: Any = negative_conditioning(model, c, _rows(self.negative, rows), self.scale, rescale=self.rescale,
                                           interval=self.interval)
        elif self.scale != 1.0 or self.rescale > 0:
            d = classifier_free(model, c, _rows(self.uncond, rows), self.scale, rescale=self.rescale,
                                interval=self.interval)
        else:
            d = Conditioned(model, **c)
        if self.classifier is not None and self.classifier_scale > 0:
            log_prob = classifier_log_prob(self.classifier, self.classifier_labels[rows])
            guided = classifier_guidance(d, log_prob, self.classifier_scale)
            # the interval bounds both kinds: a classifier's shift s sigma^2 grad log p of x0 grows with sigma^2
            d = guided if self.interval is None else limited_interval(guided, d, *self.interval)
        if self.threshold is not None:
            d = thresholded(d, self.threshold)
        return d
