"""Gaussian forward processes x_t = alpha(t) x0 + sigma(t) eps, as small closed-form objects.

t = 0 is data. Every process exposes alpha, sigma, the log-SNR lambda = log(alpha^2 / sigma^2) and
its inverse, the SDE coefficients dx = f(t) x dt + g(t) dw (Song et al. 2021, eq. 5), and the prior.
The denoiser's noise level is the variance-exploding sigma_ve = sigma / alpha = exp(-lambda / 2).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import torch

from .rng import randn
from .schedules import alphas_cumprod, make_betas

Tensor = torch.Tensor


def _t(t: Tensor | float) -> Tensor:
    return t if isinstance(t, Tensor) else torch.tensor(t, dtype=torch.float64)


def expand_like(v: Tensor, x: Tensor) -> Tensor:
    """Reshape a per-sample (B,) or scalar tensor to broadcast against x of shape (B, ...)."""
    v = v.to(dtype=x.dtype, device=x.device)
    return v.reshape(v.shape + (1,) * (x.ndim - v.ndim))


class GaussianProcess(ABC):
    """x_t = alpha(t) x0 + sigma(t) eps on t in [t_min, t_max] (Kingma et al. 2021, eq. 1)."""

    t_min: float = 0.0
    t_max: float = 1.0
    discrete: bool = False  # trained on a table of integer steps (DiscreteVP), not on continuous t

    @classmethod
    def from_config(cls, cfg: Any) -> "GaussianProcess":
        """The process a run config's `process` section describes (a ProcessConfig); the default takes no
        parameters."""
        return cls()

    @abstractmethod
    def alpha(self, t: Tensor) -> Tensor: ...

    @abstractmethod
    def sigma(self, t: Tensor) -> Tensor: ...

    @abstractmethod
    def t_of_logsnr(self, logsnr: Tensor) -> Tensor:
        """Inverse of logsnr(t)."""

    def logsnr(self, t: Tensor) -> Tensor:
        """lambda(t) = log alpha^2 - log sigma^2."""
        t = _t(t)
        return 2 * (torch.log(self.alpha(t)) - torch.log(self.sigma(t)))

    def dlogsnr_dt(self, t: Tensor) -> Tensor:
        """d lambda / dt, by autograd on the closed form (overridden where cheaper)."""
        t = _t(t).detach().double().requires_grad_(True)
        with torch.enable_grad():
            (d,) = torch.autograd.grad(self.logsnr(t).sum(), t)
        return d

    def f(self, t: Tensor) -> Tensor:
        """Drift coefficient f(t) = d log alpha / dt (Kingma et al. 2021, App. A)."""
        t = _t(t).detach().double().requires_grad_(True)
        with torch.enable_grad():
            (d,) = torch.autograd.grad(torch.log(self.alpha(t)).sum(), t)
        return d

    def g(self, t: Tensor) -> Tensor:
        """Diffusion coefficient, g(t)^2 = d sigma^2/dt - 2 f sigma^2 = -sigma^2 d lambda/dt."""
        t = _t(t)
        return torch.sqrt((-self.sigma(t) ** 2 * self.dlogsnr_dt(t)).clamp(min=0))

    def d_alpha(self, t: Tensor) -> Tensor:
        """alpha'(t) = f(t) alpha(t)."""
        return self.f(t) * self.alpha(_t(t))

    def d_sigma(self, t: Tensor) -> Tensor:
        """sigma'(t) = (g^2 + 2 f sigma^2) / (2 sigma)."""
        t = _t(t)
        s = self.sigma(t)
        return (self.g(t) ** 2 + 2 * self.f(t) * s**2) / (2 * s)

    def sigma_ve(self, t: Tensor) -> Tensor:
        """The denoiser's noise level sigma(t) / alpha(t) (Karras et al. 2022, eq. 4 with s = alpha)."""
        t = _t(t)
        return self.sigma(t) / self.alpha(t)

    def t_of_sigma_ve(self, sigma_ve: Tensor) -> Tensor:
        """Inverse of sigma_ve(t), through lambda = -2 log sigma_ve."""
        return self.t_of_logsnr(-2 * torch.log(_t(sigma_ve)))

    def marginal(self, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """Sample of q(x_t | x0) = N(alpha x0, sigma^2 I) from given noise."""
        t = _t(t)
        return expand_like(self.alpha(t), x0) * x0 + expand_like(self.sigma(t), x0) * eps

    def prior_std(self) -> float:
        """Std of the prior N(0, sigma(t_max)^2 I) that stands in for q(x_{t_max})."""
        return float(self.sigma(_t(self.t_max)))

    def prior_std_ve(self) -> float:
        """Std of the prior in VE coordinates x = x_{t_max} / alpha(t_max): where samplers start at sigma_ve_max."""
        return self.prior_std() / float(self.alpha(_t(self.t_max)))

    def prior_sample(self, shape: tuple[int, ...], *, generator: torch.Generator | None = None,
                     dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> Tensor:
        """Draw x_{t_max} from the prior, in the process's own coordinates."""
        return self.prior_std() * randn(shape, generator, dtype=dtype, device=device)

    @property
    def sigma_ve_min(self) -> float:
        return float(self.sigma_ve(_t(self.t_min)))

    @property
    def sigma_ve_max(self) -> float:
        return float(self.sigma_ve(_t(self.t_max)))


class VPLinear(GaussianProcess):
    """Continuous VP SDE with linear beta(t) = beta_min + t (beta_max - beta_min) (Song et al. 2021, eq. 11)."""

    @classmethod
    def from_config(cls, cfg: Any) -> "VPLinear":
        return cls(cfg.beta_min, cfg.beta_max)

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-3):
        self.beta_min, self.beta_max, self.t_min, self.t_max = beta_min, beta_max, t_min, 1.0

    def _log_alpha(self, t: Tensor) -> Tensor:
        # log alpha = -1/2 int_0^t beta = -t^2 (b1 - b0)/4 - t b0/2
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def alpha(self, t: Tensor) -> Tensor:
        return torch.exp(self._log_alpha(_t(t)))

    def sigma(self, t: Tensor) -> Tensor:
        return torch.sqrt(-torch.expm1(2 * self._log_alpha(_t(t))))

    def logsnr(self, t: Tensor) -> Tensor:
        la2 = 2 * self._log_alpha(_t(t))
        return la2 - torch.log(-torch.expm1(la2))

    def t_of_logsnr(self, logsnr: Tensor) -> Tensor:
        # alpha^2 = sigmoid(lambda) => c = -log alpha^2 = softplus(-lambda); solve (b1-b0)/2 t^2 + b0 t = c
        c = torch.nn.functional.softplus(-_t(logsnr))
        db = self.beta_max - self.beta_min
        return 2 * c / (self.beta_min + torch.sqrt(self.beta_min**2 + 2 * db * c))

    def beta(self, t: Tensor) -> Tensor:
        return self.beta_min + _t(t) * (self.beta_max - self.beta_min)

    def f(self, t: Tensor) -> Tensor:
        return -0.5 * self.beta(t)

    def g(self, t: Tensor) -> Tensor:
        return torch.sqrt(self.beta(t))


class SubVP(VPLinear):
    """sub-VP SDE: alpha as VP, sigma = 1 - alpha^2, g^2 = beta(t)(1 - alpha^4) (Song et al. 2021, eq. 13)."""

    def sigma(self, t: Tensor) -> Tensor:
        return -torch.expm1(2 * self._log_alpha(_t(t)))

    def logsnr(self, t: Tensor) -> Tensor:
        la2 = 2 * self._log_alpha(_t(t))
        return la2 - 2 * torch.log(-torch.expm1(la2))

    def t_of_logsnr(self, logsnr: Tensor) -> Tensor:
        # u = alpha^2 solves e^l (1-u)^2 = u; small root = 2 e^l / ((2 e^l + 1) + sqrt(4 e^l + 1))
        e = torch.exp(_t(logsnr))
        u = 2 * e / ((2 * e + 1) + torch.sqrt(4 * e + 1))
        c = -torch.log(u)
        db = self.beta_max - self.beta_min
        return 2 * c / (self.beta_min + torch.sqrt(self.beta_min**2 + 2 * db * c))

    def g(self, t: Tensor) -> Tensor:
        return torch.sqrt(self.beta(t) * -torch.expm1(4 * self._log_alpha(_t(t))))


class VE(GaussianProcess):
    """VE SDE / NCSN: alpha = 1, sigma(t) = sigma_min (sigma_max / sigma_min)^t (Song et al. 2021, eq. 9)."""

    @classmethod
    def from_config(cls, cfg: Any) -> "VE":
        return cls(cfg.sigma_min, cfg.sigma_max)

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0):
        self.s_min, self.s_max, self.t_min, self.t_max = sigma_min, sigma_max, 0.0, 1.0
        self._log_ratio = math.log(sigma_max / sigma_min)

    def alpha(self, t: Tensor) -> Tensor:
        return torch.ones_like(_t(t))

    def sigma(self, t: Tensor) -> Tensor:
        return self.s_min * torch.exp(_t(t) * self._log_ratio)

    def t_of_logsnr(self, logsnr: Tensor) -> Tensor:
        return (-0.5 * _t(logsnr) - math.log(self.s_min)) / self._log_ratio

    def f(self, t: Tensor) -> Tensor:
        return torch.zeros_like(_t(t))

    def g(self, t: Tensor) -> Tensor:
        return self.sigma(t) * math.sqrt(2 * self._log_ratio)


class EDM(GaussianProcess):
    """EDM: alpha = 1, sigma(t) = t, on t in [sigma_min, sigma_max] (Karras et al. 2022, Table 1)."""

    @classmethod
    def from_config(cls, cfg: Any) -> "EDM":
        return cls(cfg.sigma_min, cfg.sigma_max)

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, sigma_data: float = 0.5):
        self.t_min, self.t_max, self.sigma_data = sigma_min, sigma_max, sigma_data

    def alpha(self, t: Tensor) -> Tensor:
        return torch.ones_like(_t(t))

    def sigma(self, t: Tensor) -> Tensor:
        return _t(t).clone()

    def t_of_logsnr(self, logsnr: Tensor) -> Tensor:
        return torch.exp(-0.5 * _t(logsnr))

    def f(self, t: Tensor) -> Tensor:
        return torch.zeros_like(_t(t))

    def g(self, t: Tensor) -> Tensor:
        return torch.sqrt(2 * _t(t))


class Flow(GaussianProcess):
    """Linear interpolant / rectified flow: x_t = (1 - t) x0 + t eps (Liu et al. 2023; Lipman et al. 2023)."""

    def __init__(self, t_min: float = 1e-4, t_max: float = 1.0 - 1e-4):
        self.t_min, self.t_max = t_min, t_max

    def alpha(self, t: Tensor) -> Tensor:
        return 1 - _t(t)

    def sigma(self, t: Tensor) -> Tensor:
        return _t(t).clone()

    def t_of_logsnr(self, logsnr: Tensor) -> Tensor:
        # alpha/sigma = (1-t)/t = exp(lambda/2)
        return torch.sigmoid(-0.5 * _t(logsnr))

    def f(self, t: Tensor) -> Tensor:
        return -1 / (1 - _t(t))

    def g(self, t: Tensor) -> Tensor:
        t = _t(t)
        return torch.sqrt(2 * t / (1 - t))

    def prior_std(self) -> float:
        return 1.0


class FlowCosine(GaussianProcess):
    """Trigonometric interpolant x_t = cos(pi t / 2) x0 + sin(pi t / 2) eps (Albergo & Vanden-Eijnden 2023, eq. 2.6;
    the GVP path of Ma et al. 2024): variance preserving, with the velocity of a flow."""

    def __init__(self, t_min: float = 1e-4, t_max: float = 1.0 - 1e-4):
        self.t_min, self.t_max = t_min, t_max

    def alpha(self, t: Tensor) -> Tensor:
        return torch.cos(0.5 * math.pi * _t(t))

    def sigma(self, t: Tensor) -> Tensor:
        return torch.sin(0.5 * math.pi * _t(t))

    def t_of_logsnr(self, logsnr: Tensor) -> Tensor:
        # alpha / sigma = cot(pi t / 2) = exp(lambda / 2)
        return torch.atan(torch.exp(-0.5 * _t(logsnr))) * (2 / math.pi)

    def f(self, t: Tensor) -> Tensor:
        return -0.5 * math.pi * torch.tan(0.5 * math.pi * _t(t))

    def g(self, t: Tensor) -> Tensor:
        # g^2 = -sigma^2 d lambda / dt = pi tan(pi t / 2)
        return torch.sqrt(math.pi * torch.tan(0.5 * math.pi * _t(t)))


class DiscreteVP(GaussianProcess):
    """DDPM: q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I), t = 0..T-1 (Ho et al. 2020, eq. 2).

    Integer t index the table (0-based, like diffusers); fractional t interpolate lambda linearly, which
    makes the chain a continuous process with the same f, g formulas as every other.
    """

    discrete = True

    @classmethod
    def from_config(cls, cfg: Any) -> "DiscreteVP":
        return cls(make_betas(cfg.schedule, cfg.T, zero_terminal_snr=cfg.zero_terminal_snr))

    def __init__(self, betas: Tensor):
        betas = betas.double()
        if betas.ndim != 1 or len(betas) < 1:
            raise ValueError(f"betas must be a non-empty 1-D tensor, got shape {tuple(betas.shape)}")
        if not bool(((betas > 0) & (betas <= 1)).all()):
            raise ValueError("betas must lie in (0, 1]")
        self.betas = betas
        self.T = len(betas)
        self.alphas_cumprod = alphas_cumprod(betas)
        # A zero-terminal-SNR table has abar_{T-1} = 0: keep lambda finite (sigma_ve <= e^15).
        ab = self.alphas_cumprod.clamp(min=1e-13)
        self.logsnr_table = torch.log(ab) - torch.log1p(-ab)  # decreasing in t
        self.t_min, self.t_max = 0.0, float(self.T - 1)

    @property
    def sigmas_ve(self) -> Tensor:
        """sigma_ve at each integer step, increasing: sqrt((1 - abar_t) / abar_t) (Karras et al. 2022, App. C.1)."""
        return torch.exp(-0.5 * self.logsnr_table)

    def logsnr(self, t: Tensor) -> Tensor:
        t = _t(t).double().clamp(0, self.T - 1)
        lo = t.floor().long().clamp(max=self.T - 2) if self.T > 1 else torch.zeros_like(t, dtype=torch.long)
        w = t - lo
        L = self.logsnr_table
        return L[lo] if self.T == 1 else L[lo] * (1 - w) + L[(lo + 1).clamp(max=self.T - 1)] * w

    def alpha(self, t: Tensor) -> Tensor:
        return torch.sqrt(torch.sigmoid(self.logsnr(t)))

    def sigma(self, t: Tensor) -> Tensor:
        return torch.sqrt(torch.sigmoid(-self.logsnr(t)))

    def t_of_logsnr(self, logsnr: Tensor) -> Tensor:
        lam = _t(logsnr).double()
        L = self.logsnr_table.flip(0)  # increasing; index j <-> t = T-1-j
        lam_c = lam.clamp(float(L[0]), float(L[-1]))
        j = torch.searchsorted(L, lam_c.contiguous(), right=True).clamp(1, self.T - 1)
        lo, hi = L[j - 1], L[j]
        w = ((lam_c - lo) / (hi - lo).clamp(min=1e-30)).clamp(0, 1)
        return (self.T - 1) - (j - 1 + w)

    def dlogsnr_dt(self, t: Tensor) -> Tensor:
        t = _t(t).double().clamp(0, self.T - 1)
        lo = t.floor().long().clamp(max=self.T - 2)
        return self.logsnr_table[lo + 1] - self.logsnr_table[lo]

    def f(self, t: Tensor) -> Tensor:
        # d log alpha/dt with alpha^2 = sigmoid(lambda): f = sigma^2 lambda' / 2
        return 0.5 * self.sigma(t) ** 2 * self.dlogsnr_dt(t)

    def step(self, x_prev: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """Sample q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I) from given noise."""
        b = expand_like(self.betas[_t(t).long()], x_prev)
        return torch.sqrt(1 - b) * x_prev + torch.sqrt(b) * eps

    def _abar_prev(self, t: Tensor) -> Tensor:
        t = _t(t).long()
        return torch.where(t > 0, self.alphas_cumprod[(t - 1).clamp(min=0)], torch.ones((), dtype=torch.float64))

    def posterior_variance(self, t: Tensor) -> Tensor:
        """beta-tilde_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t (Ho et al. 2020, eq. 7)."""
        t = _t(t).long()
        return (1 - self._abar_prev(t)) / (1 - self.alphas_cumprod[t]) * self.betas[t]

    def posterior_log_variance_clipped(self, t: Tensor) -> Tensor:
        """log beta-tilde_t with beta-tilde_0 (which is 0) replaced by beta-tilde_1 (Nichol & Dhariwal 2021)."""
        t = _t(t).long()
        return torch.log(self.posterior_variance(torch.where(t == 0, torch.ones_like(t), t))) \
            if self.T > 1 else torch.log(self.betas[t])

    def posterior(self, x0: Tensor, xt: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and variance of q(x_{t-1} | x_t, x0) (Ho et al. 2020, eqs. 6-7)."""
        t = _t(t).long()
        ab, ab_prev, beta = self.alphas_cumprod[t], self._abar_prev(t), self.betas[t]
        c0 = torch.sqrt(ab_prev) * beta / (1 - ab)
        ct = torch.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab)
        mean = expand_like(c0, xt) * x0 + expand_like(ct, xt) * xt
        return mean, expand_like(self.posterior_variance(t), xt)

    def prior_std(self) -> float:
        return 1.0
