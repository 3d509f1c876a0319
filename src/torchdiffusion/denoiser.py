"""The denoiser contract D(x, sigma, **cond) -> x0_hat, and the one wrapper that builds it from a backbone.

Samplers see every model as D in variance-exploding coordinates x = x0 + sigma * eps (Karras et al.
2022, eq. 2). A process state x_t = alpha x0 + sigma_t eps maps to x = x_t / alpha, sigma = sigma_t / alpha.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn

from .checks import check_batch, check_matches_module
from .parameterization import PREDICTIONS, edm_scalings, target, to_x0
from .processes import EDM, VE, DiscreteVP, GaussianProcess, expand_like

Tensor = torch.Tensor
NOISE_INPUTS = ("t", "1000t", "c_noise")


class Denoiser(Protocol):
    """Any callable E[x0 | x] in VE coordinates: x (B, ...), sigma (B,) -> x0_hat (B, ...)."""

    def __call__(self, x: Tensor, sigma: Tensor, **cond: Any) -> Tensor: ...


def sigma_batch(sigma: Tensor | float, x: Tensor) -> Tensor:
    """Broadcast a scalar or (B,) noise level to shape (B,) in x's dtype and device."""
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if s.ndim == 0:
        return s.expand(x.shape[0])
    if s.shape != (x.shape[0],):
        raise ValueError(f"sigma must be a scalar or of shape ({x.shape[0]},), got {tuple(s.shape)}")
    return s


def default_noise_input(process: GaussianProcess, prediction: str) -> str:
    """What the backbone is conditioned on: the step index for DDPM, 1000 t for VP/flow, log(sigma)/4 else."""
    if prediction == "edm":
        return "c_noise"
    if isinstance(process, DiscreteVP):
        return "t"
    return "c_noise" if isinstance(process, (VE, EDM)) else "1000t"


class ModelDenoiser(nn.Module):
    """Wraps (backbone, process, prediction type) into D(x, sigma) -> x0_hat; conversions happen here only.

    A discrete-time process (DiscreteVP) conditions the backbone on the nearest integer step, so the
    network advertises sigma_min/sigma_max of its table and rounds sigma to its grid.
    """

    def __init__(self, backbone: nn.Module, process: GaussianProcess, prediction: str = "eps", *,
                 sigma_data: float = 0.5, noise_input: str | None = None, learned_variance: bool = False):
        super().__init__()
        if prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction type {prediction!r}; choose one of {PREDICTIONS}")
        self.backbone, self.process, self.prediction = backbone, process, prediction
        self.sigma_data = sigma_data
        self.noise_input = noise_input or default_noise_input(process, prediction)
        if self.noise_input not in NOISE_INPUTS:
            raise ValueError(f"unknown noise_input {self.noise_input!r}; choose one of {NOISE_INPUTS}")
        self.discrete = isinstance(process, DiscreteVP)
        self.learned_variance = learned_variance

    @property
    def sigma_min(self) -> float:
        return self.process.sigma_ve_min

    @property
    def sigma_max(self) -> float:
        return self.process.sigma_ve_max

    def net_time(self, t: Tensor) -> Tensor:
        """The time the backbone may see: clamped to the process's range, rounded for a discrete table."""
        t = t.double().clamp(self.process.t_min, self.process.t_max)
        return t.round() if self.discrete else t

    def c_noise(self, t: Tensor) -> Tensor:
        """Noise-level input of the backbone for process time t, shape (B,)."""
        if self.noise_input == "t":
            return t
        if self.noise_input == "1000t":
            return 1000 * t
        return torch.log(self.process.sigma_ve(t)) / 4

    def raw(self, xt: Tensor, t: Tensor, **cond: Any) -> Tensor:
        """Backbone output for the process state x_t at time t (B,); what the loss regresses."""
        check_matches_module("x", xt, self.backbone)
        if self.prediction == "edm":
            # EDM scalings act on the VE state x = x_t / alpha
            _, _, c_in, c_noise = edm_scalings(self.process.sigma_ve(t), self.sigma_data)
            c_in = c_in / self.process.alpha(t)
            return self.backbone(expand_like(c_in, xt) * xt, c_noise.to(xt.dtype), **cond)
        return self.backbone(xt, self.c_noise(t).to(xt.dtype), **cond)

    def training_target(self, x0: Tensor, eps: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        """The regression target of raw() for a clean x0 and noise eps at time t."""
        p = self.process
        a, s = expand_like(p.alpha(t), x0), expand_like(p.sigma(t), x0)
        if self.prediction == "edm":
            c_skip, c_out, _, _ = edm_scalings(p.sigma_ve(t), self.sigma_data)
            return (x0 - expand_like(c_skip, x0) * xt / a) / expand_like(c_out, x0)
        da = expand_like(p.d_alpha(t), x0) if self.prediction == "velocity" else None
        ds = expand_like(p.d_sigma(t), x0) if self.prediction == "velocity" else None
        return target(self.prediction, x0, eps, a, s, da, ds)

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
        p = self.process
        t, a, xt = self.process_state(x, sigma)
        s = a * expand_like(sigma, x)  # exact for sigma on the grid; the requested level otherwise
        out = self.raw(xt, t, **cond)
        frac = None
        if self.learned_variance:
            out, v = out.chunk(2, dim=1)
            frac = (v + 1) / 2
        if self.prediction == "edm":
            c_skip, c_out, _, _ = edm_scalings(sigma, self.sigma_data)
            return expand_like(c_skip, x) * x + expand_like(c_out, x) * out, frac
        da = expand_like(p.d_alpha(t), x) if self.prediction == "velocity" else None
        ds = expand_like(p.d_sigma(t), x) if self.prediction == "velocity" else None
        return to_x0(self.prediction, out, xt, a, s, da, ds), frac

    def forward(self, x: Tensor, sigma: Tensor | float, **cond: Any) -> Tensor:
        """D(x, sigma) = E[x0 | x] estimated by the backbone."""
        return self.forward_with_variance(x, sigma, **cond)[0]


class CountingDenoiser:
    """Wraps a denoiser and counts its evaluations (NFE); every other attribute passes through."""

    def __init__(self, denoiser: Any):
        self.denoiser, self.calls = denoiser, 0

    def __call__(self, x: Tensor, sigma: Tensor, **cond: Any) -> Tensor:
        self.calls += 1
        return self.denoiser(x, sigma, **cond)

    def forward_with_variance(self, x: Tensor, sigma: Tensor, **cond: Any) -> tuple[Tensor, Tensor | None]:
        self.calls += 1
        return self.denoiser.forward_with_variance(x, sigma, **cond)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["denoiser"], name)


class Conditioned:
    """D(x, sigma) = denoiser(x, sigma, **cond) with cond bound; attributes (sigma_min, process...) pass through.

    Samplers call D(x, sigma) only, so conditioning is bound here, once, per batch of per-sample tensors.
    """

    def __init__(self, denoiser: Any, **cond: Any):
        self.denoiser, self.cond = denoiser, cond

    def __call__(self, x: Tensor, sigma: Tensor, **more: Any) -> Tensor:
        return self.denoiser(x, sigma, **self.cond, **more)

    def forward_with_variance(self, x: Tensor, sigma: Tensor, **more: Any) -> tuple[Tensor, Tensor | None]:
        return self.denoiser.forward_with_variance(x, sigma, **self.cond, **more)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["denoiser"], name)
