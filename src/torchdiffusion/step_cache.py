"""Step caching (DeepCache, Ma et al. 2023, sec. 3.2): a U-Net's deep features reused across adjacent steps.

Adjacent sampler steps change the U-Net's high-level features little, so a full pass every `interval` steps stores
the decoder's features where it re-enters the shallowest level, and the steps in between run only that level's
branch: conv_in, the first down level, and the last up level fed with the stored features (the paper's "skip branch"
at depth 1). The wrapper is again a Denoiser, so every sampler and guidance method works over it unchanged.

A *step* is a call at a new sigma: calls at the same sigma (guidance branches that do not batch) share it, the k-th
call of a step reusing the k-th call's stored features. A sigma above the last one starts a new trajectory (a new
batch), which begins with a full pass; a stored feature of another shape is never reused. Interval 1 is a full pass
on every call, the plain model exactly.

Non-uniform refresh: features are reused only from a full pass at sigma <= max_sigma. An eps model's x0_hat is
x - sigma * eps, so a stale feature's error is multiplied by sigma; at 20 steps the first grid points are far apart
at huge sigma (e.g. 20291 -> 642 -> 214 -> 12 on a cosine schedule) and caching there moved digits samples by RMS
0.46-0.62 (docs/latent.md), while every step below sigma 10 cached alone moved them by < 0.003. So high-noise steps
get full passes and caching runs where adjacent levels are close (default_max_sigma).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .model_denoiser import ModelDenoiser
from .nn.unet import UNet

Tensor = torch.Tensor


class CachedUNet(nn.Module):
    """The U-Net's forward with a `full` switch: True stores the deep features in `slot`, False reuses them."""

    def __init__(self, unet: UNet):
        super().__init__()
        if len(unet.config.channel_mult) < 2:
            raise ValueError("step caching needs a U-Net with at least two levels (model.params.channel_mult of "
                             f"length >= 2); this one has {list(unet.config.channel_mult)}")
        self.unet, self.config = unet, unet.config
        self.full, self.slot = True, 0
        self.store: dict[int, Tensor] = {}
        self.deep_calls = 0  # how many calls ran the deep blocks (full passes)
        self.shallow_calls = 0  # how many reused them

    def forward(self, x: Tensor, noise_level: Tensor, class_labels: Tensor | None = None,
                context: Tensor | None = None, context_mask: Tensor | None = None) -> Tensor:
        """The U-Net's output; on a cached call only its shallowest level runs."""
        u = self.unet
        last = len(u.up) - 1  # the up level that eats level 0's skips
        emb, context = u.embedding(x, noise_level, class_labels, context, context_mask)
        cached = self.store.get(self.slot)
        if self.full or cached is None or cached.shape[0] != x.shape[0] or cached.shape[-2:] != x.shape[-2:]:
            h, skips = u.encode(x, emb, context, context_mask)
            h = u.middle(h, emb, context, context_mask)
            cached = u.decode(h, skips, emb, context, context_mask, stop=last)  # (B, C, H, W) entering level 0
            self.store[self.slot] = cached
            self.deep_calls += 1
        else:
            _, skips = u.encode(x, emb, context, context_mask, levels=1)  # conv_in and level 0's blocks only
            self.shallow_calls += 1
        return u.decode(cached, skips, emb, context, context_mask, start=last)


class StepCachedDenoiser(nn.Module):
    """D(x, sigma, **cond) of a U-Net model whose deep features are recomputed every `interval` steps, and at every
    step whose last full pass was above max_sigma (None: the uniform 1:N schedule)."""

    def __init__(self, model: ModelDenoiser, interval: int, max_sigma: float | None = None):
        super().__init__()
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f"cache interval must be an integer >= 1 (1: no caching), got {interval!r}")
        if max_sigma is not None and (isinstance(max_sigma, bool) or not isinstance(max_sigma, (int, float))
                                      or not max_sigma > 0 or max_sigma != max_sigma):
            raise ValueError(f"cache max_sigma must be a number > 0 (None: cache at every noise level), "
                             f"got {max_sigma!r}")
        if not isinstance(model, ModelDenoiser) or not isinstance(model.backbone, UNet):
            backbone = type(getattr(model, "backbone", model)).__name__
            raise ValueError(f"step caching works on a U-Net model; this model's backbone is a {backbone}")
        self.interval = interval
        # features of a full pass above max_sigma are never reused (None: any; default_max_sigma(model) in step_cached)
        self.max_sigma = math.inf if max_sigma is None else float(max_sigma)
        self.cached = CachedUNet(model.backbone)
        # the same process and prediction around the caching backbone: the conversions stay in ModelDenoiser
        self.inner = ModelDenoiser(self.cached, model.process, model.prediction, sigma_data=model.sigma_data,
                                   noise_input=model.parameterization.noise_input,
                                   learned_variance=model.learned_variance)
        self.sigma_min, self.sigma_max = model.sigma_min, model.sigma_max
        self.sigma_data, self.sigma_table = model.sigma_data, model.sigma_table
        self.round_sigma = model.round_sigma
        self._last: Tensor | None = None
        self._step = -1
        self._full_step, self._full_sigma = 0, math.inf  # the last full pass: its step and its (largest) sigma

    def __getattr__(self, name: str) -> Any:
        """Anything else (process, prediction, raw_ve, ...) is the plain model's."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "inner":
                raise
            return getattr(self.inner, name)

    @property
    def backbone(self) -> nn.Module:
        """The wrapped U-Net (its config, its device), as for the plain model."""
        return self.cached.unet

    def _begin_call(self, sigma: Tensor | float, x: Tensor) -> None:
        """Count steps: a new sigma is the next step (a larger one a new trajectory); pick full or cached."""
        s = torch.as_tensor(sigma, dtype=torch.float64).detach().cpu().reshape(-1)
        if self._last is not None and s.shape == self._last.shape and torch.equal(s, self._last):
            self.cached.slot += 1  # another call within the same step
            return
        new_trajectory = self._last is None or s.shape != self._last.shape or bool((s > self._last).any())
        self._step = 0 if new_trajectory else self._step + 1
        self._last, self.cached.slot = s, 0
        reuse = (not new_trajectory and self._step - self._full_step < self.interval
                 and self._full_sigma <= self.max_sigma)
        self.cached.full = not reuse
        if self.cached.full:
            self.cached.store.clear()
            self._full_step, self._full_sigma = self._step, float(s.max())

    def forward_with_variance(self, x: Tensor, sigma: Tensor | float, **cond: Any) -> tuple[Tensor, Tensor | None]:
        """x0_hat and the learned-variance fraction, as ModelDenoiser's."""
        self._begin_call(sigma, x)
        return self.inner.forward_with_variance(x, sigma, **cond)

    def forward(self, x: Tensor, sigma: Tensor | float, **cond: Any) -> Tensor:
        """D(x, sigma) with the deep features of the last full step."""
        return self.forward_with_variance(x, sigma, **cond)[0]


def step_cached(model: ModelDenoiser, interval: int, max_sigma: float | None | str = "auto") -> nn.Module:
    """The model with DeepCache step caching (Ma et al. 2023): a full pass, then at most interval - 1 steps on its
    deep features, which are reused only when the full pass was at sigma <= max_sigma ("auto": default_max_sigma;
    None: at every level, the paper's uniform 1:N). Interval 1: the model itself."""
    if max_sigma == "auto":
        max_sigma = default_max_sigma(model)
    return StepCachedDenoiser(model, interval, max_sigma)



# eps and score outputs are scaled by sigma into x0_hat = x - sigma * eps, so a stale deep feature's error grows with
# the noise level. Chosen on digits (eps, iPNDM at 20 steps, seed 0; docs/latent.md): the smallest full-pass count
# whose samples stay within a tenth of the 20-vs-25-step yardstick at interval 3.
UNBOUNDED_PREDICTIONS = ("eps", "score")
MAX_SIGMA_IN_SIGMA_DATA = 20.0
# The others (x0, v, velocity, edm, consistency) reach x0_hat with a bounded factor, yet uncapped caching still moved a
# trained v model's samples by 8x the yardstick at 20 steps (FID 4.4 -> 18.6 at interval 2). Chosen on a Fashion-MNIST
# v model (UniPC at 20 steps, seed 0; docs/latent.md): the largest of the caps 0.5, 1, 2, 5 (in sigma_data)
# whose samples move less than the 20-vs-25-step yardstick at interval 3.
BOUNDED_MAX_SIGMA_IN_SIGMA_DATA = 1.0


def default_max_sigma(model: Any) -> float:
    """The highest noise level whose deep features are reused: 20 sigma_data for a model whose output reaches x0_hat
    multiplied by sigma (eps, score), 1 sigma_data for the bounded parameterisations."""
    scale = MAX_SIGMA_IN_SIGMA_DATA if getattr(model, "prediction", None) in UNBOUNDED_PREDICTIONS \
        else BOUNDED_MAX_SIGMA_IN_SIGMA_DATA
    return scale * float(model.sigma_data)
