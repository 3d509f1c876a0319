"""The one wrapper that turns (backbone, process, prediction type) into a Denoiser; conversions happen here only.

A process state x_t = alpha x0 + sigma_t eps is the VE state x = x_t / alpha at sigma = sigma_t / alpha (Karras et
al. 2022, eq. 2); what the backbone predicts is turned into x0 by its `Prediction` (predictions.py).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .checks import check_batch, check_matches_module
from .denoiser import sigma_batch
from .predictions import Prediction
from .processes import GaussianProcess, expand_like
from .registry import PREDICTIONS

Tensor = torch.Tensor


class ModelDenoiser(nn.Module):
    """D(x, sigma) -> x0_hat from a backbone trained on a process with a prediction type.

    A discrete-time process (DiscreteVP) conditions the backbone on the nearest integer step, so the model advertises
    its table (`sigma_table`), sigma_min/sigma_max of that table, and rounds sigma onto it.
    """

    def __init__(self, backbone: nn.Module, process: GaussianProcess, prediction: str = "eps", *,
                 sigma_data: float = 0.5, noise_input: str | None = None, learned_variance: bool = False):
        super().__init__()
        self.backbone, self.process, self.prediction = backbone, process, prediction
        self.parameterization: Prediction = PREDICTIONS.lookup(prediction)(process, sigma_data=sigma_data,
                                                                           noise_input=noise_input)
        self.sigma_data = sigma_data
        self.learned_variance = learned_variance

    @property
    def noise_input(self) -> str:
        return self.parameterization.noise_input

    @property
    def sigma_min(self) -> float:
        return self.process.sigma_ve_min

    @property
    def sigma_max(self) -> float:
        return self.process.sigma_ve_max

    @property
    def sigma_table(self) -> Tensor | None:
        """The ascending VE levels of a discrete-time process's steps; None for a continuous one."""
        return self.process.sigmas_ve if self.process.discrete else None

    def round_sigma(self, sigma: Tensor) -> Tensor:
        """The level the backbone is asked at for sigma: the nearest table step's (itself when continuous)."""
        return self.process.sigma_ve(self.net_time(self.process.t_of_sigma_ve(sigma.double())))

    def net_time(self, t: Tensor) -> Tensor:
        """The time the backbone may see: clamped to the process's range, rounded for a discrete table."""
        t = t.double().clamp(self.process.t_min, self.process.t_max)
        return t.round() if self.process.discrete else t

    def raw(self, xt: Tensor, t: Tensor, **cond: Any) -> Tensor:
        """Backbone output for the process state x_t at time t (B,); what the loss regresses."""
        check_matches_module("x", xt, self.backbone)
        p = self.parameterization
        c_in = p.c_in(t)
        x_in = xt if c_in is None else expand_like(c_in, xt) * xt
        return self.backbone(x_in, p.c_noise(t).to(xt.dtype), **cond)

    def training_target(self, x0: Tensor, eps: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        """The regression target of raw() for a clean x0 and noise eps at time t."""
        return self.parameterization.target(x0, eps, xt, t)

    def process_state(self, x: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(t (B,), alpha(t) broadcast to x, x_t = alpha x) for the VE state x at noise level sigma (B,)."""
        t = self.net_time(self.process.t_of_sigma_ve(sigma.double()))
        a = expand_like(self.process.alpha(t), x)
        return t, a, a * x

    def raw_ve(self, x: Tensor, sigma: Tensor | float, **cond: Any) -> Tensor:
        """The backbone's output for the VE state x at noise level sigma (a classifier's logits, say)."""
        t, _, xt = self.process_state(x, sigma_batch(sigma, x))
        return self.raw(xt, t, **cond)

    def forward_with_variance(self, x: Tensor, sigma: Tensor | float, **cond: Any) -> tuple[Tensor, Tensor | None]:
        """x0_hat and, for a learned-variance head, the interpolation fraction in [0, 1] (Nichol & Dhariwal, eq. 15)."""
        check_batch("x", x, min_dims=2)
        check_matches_module("x", x, self.backbone)  # before sigma is read on x's device
        sigma = sigma_batch(sigma, x)
        if not bool(torch.isfinite(sigma).all()) or bool((sigma < 0).any()):
            raise ValueError(f"sigma must be finite and >= 0, got {sigma.tolist()[:8]}")
        t, _, xt = self.process_state(x, sigma)
        out = self.raw(xt, t, **cond)
        frac = None
        if self.learned_variance:
            out, v = out.chunk(2, dim=1)
            frac = (v + 1) / 2
        # the requested sigma, exact on a table level: off the table x0 is read at the level the caller asked for
        return self.parameterization.to_x0(out, xt, t, sigma), frac

    def forward(self, x: Tensor, sigma: Tensor | float, **cond: Any) -> Tensor:
        """D(x, sigma) = E[x0 | x] estimated by the backbone."""
        return self.forward_with_variance(x, sigma, **cond)[0]
