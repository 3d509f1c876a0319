"""One class per prediction type: what a backbone outputs for x_t = alpha(t) x0 + sigma(t) eps.

Each owns, in the style of EDM's preconditioning classes (Karras et al. 2022, Table 1), its training target, its
conversion of the output to x0, the factor r(t) by which its squared error exceeds the x0 error (so a loss
weighting means the same for every target), and the scalings of the backbone's inputs: c_in on x_t and the noise
input c_noise. Formulas live in `parameterization`; these classes bind them to a process.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch

from .parameterization import (edm_scalings, score_from_eps, v_from_x0_eps, velocity_from_x0_eps,
                               x0_from_eps, x0_from_score, x0_from_v, x0_from_velocity)
from .processes import EDM, VE, GaussianProcess, expand_like

Tensor = torch.Tensor
NOISE_INPUTS = ("t", "1000t", "c_noise")


class Prediction(ABC):
    """A prediction type on a process. t is process time (B,); x0, eps, xt, out are (B, ...).

    noise_input, what the backbone is conditioned on: "t" (the step index of a discrete table), "1000t" (VP and
    flow, as DDPM-style networks expect) or "c_noise" = log(sigma_ve) / 4 (Karras et al. 2022, Table 1).
    """

    name: ClassVar[str]

    def __init__(self, process: GaussianProcess, *, sigma_data: float = 0.5, noise_input: str | None = None):
        self.process, self.sigma_data = process, sigma_data
        self.noise_input = noise_input or self.default_noise_input(process)
        if self.noise_input not in NOISE_INPUTS:
            raise ValueError(f"unknown noise_input {self.noise_input!r}; choose one of {NOISE_INPUTS}")

    @staticmethod
    def default_noise_input(process: GaussianProcess) -> str:
        """The step index for a discrete table, 1000 t for VP and flow, log(sigma) / 4 for VE and EDM."""
        if process.discrete:
            return "t"
        return "c_noise" if isinstance(process, (VE, EDM)) else "1000t"

    def _alpha_sigma(self, t: Tensor, like: Tensor, sigma_ve: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """alpha(t), sigma(t) broadcast to `like`; sigma = alpha sigma_ve where a (requested) VE level is given."""
        a = expand_like(self.process.alpha(t), like)
        s = expand_like(self.process.sigma(t), like) if sigma_ve is None else a * expand_like(sigma_ve, like)
        return a, s

    def c_in(self, t: Tensor) -> Tensor | None:
        """Scaling of the network input x_t, (B,); None: x_t goes in as it is."""
        return None

    def c_noise(self, t: Tensor) -> Tensor:
        """The backbone's noise-level input for process time t, (B,)."""
        if self.noise_input == "t":
            return t
        if self.noise_input == "1000t":
            return 1000 * t
        return torch.log(self.process.sigma_ve(t)) / 4

    @abstractmethod
    def target(self, x0: Tensor, eps: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        """The regression target of the backbone for clean x0 and noise eps at time t."""

    @abstractmethod
    def to_x0(self, out: Tensor, xt: Tensor, t: Tensor, sigma_ve: Tensor | None = None) -> Tensor:
        """x0_hat from the backbone's output; sigma_ve: the VE level asked for, when t was rounded onto a table."""

    @abstractmethod
    def error_factor(self, t: Tensor) -> Tensor:
        """r(t) with ||out_hat - target||^2 = r(t) ||x0_hat - x0||^2, (B,)."""


class EpsPrediction(Prediction):
    """eps-prediction (Ho et al. 2020, eq. 11): x0 = (x_t - sigma eps) / alpha, r = SNR."""

    name = "eps"

    def target(self, x0: Tensor, eps: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        return eps

    def to_x0(self, out: Tensor, xt: Tensor, t: Tensor, sigma_ve: Tensor | None = None) -> Tensor:
        return x0_from_eps(xt, out, *self._alpha_sigma(t, xt, sigma_ve))

    def error_factor(self, t: Tensor) -> Tensor:
        return self.process.alpha(t) ** 2 / self.process.sigma(t) ** 2


class X0Prediction(Prediction):
    """x0-prediction: the output is x0_hat itself, r = 1."""

    name = "x0"

    def target(self, x0: Tensor, eps: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        return x0

    def to_x0(self, out: Tensor, xt: Tensor, t: Tensor, sigma_ve: Tensor | None = None) -> Tensor:
        return out

    def error_factor(self, t: Tensor) -> Tensor:
        return torch.ones_like(self.process.alpha(t))


class VPrediction(Prediction):
    """v = alpha eps - sigma x0 (Salimans & Ho 2022, sec. 4), r = (alpha^2 + sigma^2)^2 / sigma^2."""

    name = "v"

    def target(self, x0: Tensor, eps: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        return v_from_x0_eps(x0, eps, *self._alpha_sigma(t, x0))

    def to_x0(self, out: Tensor, xt: Tensor, t: Tensor, sigma_ve: Tensor | None = None) -> Tensor:
        return x0_from_v(xt, out, *self._alpha_sigma(t, xt, sigma_ve))

    def error_factor(self, t: Tensor) -> Tensor:
        a, s = self.process.alpha(t), self.process.sigma(t)
        return (a**2 + s**2) ** 2 / s**2


class ScorePrediction(Prediction):
    """The score grad log p(x_t) = -eps / sigma (Song et al. 2021, eq. 7), x0 by Tweedie, r = alpha^2 / sigma^4."""

    name = "score"

    def target(self, x0: Tensor, eps: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        return score_from_eps(eps, self._alpha_sigma(t, x0)[1])

    def to_x0(self, out: Tensor, xt: Tensor, t: Tensor, sigma_ve: Tensor | None = None) -> Tensor:
        return x0_from_score(xt, out, *self._alpha_sigma(t, xt, sigma_ve))

    def error_factor(self, t: Tensor) -> Tensor:
        return self.process.alpha(t) ** 2 / self.process.sigma(t) ** 4


class VelocityPrediction(Prediction):
    """The flow velocity u = dx_t/dt = alpha' x0 + sigma' eps (Liu et al. 2023; Lipman et al. 2023),
    r = (alpha sigma' - sigma alpha')^2 / sigma^2."""

    name = "velocity"

    def _derivatives(self, t: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        return expand_like(self.process.d_alpha(t), like), expand_like(self.process.d_sigma(t), like)

    def target(self, x0: Tensor, eps: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        return velocity_from_x0_eps(x0, eps, *self._derivatives(t, x0))

    def to_x0(self, out: Tensor, xt: Tensor, t: Tensor, sigma_ve: Tensor | None = None) -> Tensor:
        return x0_from_velocity(xt, out, *self._alpha_sigma(t, xt, sigma_ve), *self._derivatives(t, xt))

    def error_factor(self, t: Tensor) -> Tensor:
        p = self.process
        a, s = p.alpha(t), p.sigma(t)
        return (a * p.d_sigma(t) - s * p.d_alpha(t)) ** 2 / s**2


class EDMPrecond(Prediction):
    """EDM's preconditioning (Karras et al. 2022, eq. 7 and Table 1): D = c_skip x + c_out F(c_in x, c_noise) on the
    VE state x = x_t / alpha; F regresses (x0 - c_skip x) / c_out, r = 1 / c_out^2. The noise input is c_noise."""

    name = "edm"

    @staticmethod
    def default_noise_input(process: GaussianProcess) -> str:
        return "c_noise"

    def scalings(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """c_skip, c_out, c_in, c_noise at the VE level sigma."""
        return edm_scalings(sigma, self.sigma_data)

    def c_in(self, t: Tensor) -> Tensor:
        # EDM's c_in acts on the VE state x = x_t / alpha
        return self.scalings(self.process.sigma_ve(t))[2] / self.process.alpha(t)

    def target(self, x0: Tensor, eps: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        c_skip, c_out, _, _ = self.scalings(self.process.sigma_ve(t))
        x = xt / expand_like(self.process.alpha(t), xt)
        return (x0 - expand_like(c_skip, x0) * x) / expand_like(c_out, x0)

    def to_x0(self, out: Tensor, xt: Tensor, t: Tensor, sigma_ve: Tensor | None = None) -> Tensor:
        sigma = self.process.sigma_ve(t) if sigma_ve is None else sigma_ve
        c_skip, c_out, _, _ = self.scalings(sigma)
        x = xt / expand_like(self.process.alpha(t), xt)
        return expand_like(c_skip, x) * x + expand_like(c_out, x) * out

    def error_factor(self, t: Tensor) -> Tensor:
        return 1 / self.scalings(self.process.sigma_ve(t))[1] ** 2


class ConsistencyPrecond(EDMPrecond):
    """A consistency model's boundary parameterisation (Song et al. 2023, App. C): f = c_skip x + c_out F with
    c_skip = sigma_data^2 / ((sigma - sigma_min)^2 + sigma_data^2), c_out = (sigma - sigma_min) sigma_data /
    sqrt(sigma^2 + sigma_data^2), so f(x, sigma_min) = x exactly; sigma_min is the process's lowest VE level."""

    name = "consistency"

    @staticmethod
    def default_noise_input(process: GaussianProcess) -> str:
        # the process's usual input (as for eps, v...), so a student started from a teacher's weights on the same
        # process reads its noise level the way the teacher learned to
        return Prediction.default_noise_input(process)

    def scalings(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        s_min = self.process.sigma_ve_min
        _, _, c_in, c_noise = edm_scalings(sigma, self.sigma_data)
        d = (sigma - s_min).clamp(min=0)  # below the boundary f is the identity too
        c_skip = self.sigma_data**2 / (d**2 + self.sigma_data**2)
        c_out = d * self.sigma_data / torch.sqrt(sigma**2 + self.sigma_data**2)
        return c_skip, c_out, c_in, c_noise

    def error_factor(self, t: Tensor) -> Tensor:
        # c_out = 0 at the boundary, where the output is not learned: weight it as just above
        return 1 / self.scalings(self.process.sigma_ve(t))[1].clamp(min=1e-6) ** 2
