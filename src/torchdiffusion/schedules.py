"""Discrete noise schedules: beta tables of length T and SNR utilities (float64 throughout)."""

from __future__ import annotations

import math
from typing import Callable

import torch

Tensor = torch.Tensor


def betas_from_alpha_bar(alpha_bar: Callable[[Tensor], Tensor], T: int, max_beta: float = 0.999) -> Tensor:
    """beta_i = 1 - abar((i+1)/T) / abar(i/T), clipped at max_beta (Nichol & Dhariwal 2021, eq. 17)."""
    t = torch.arange(T + 1, dtype=torch.float64) / T
    ab = alpha_bar(t)
    return (1.0 - ab[1:] / ab[:-1]).clamp(min=0.0, max=max_beta)


def linear_betas(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """Linear beta_t from beta_start to beta_end (Ho et al. 2020, sec. 4)."""
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def scaled_linear_betas(T: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012) -> Tensor:
    """Linear in sqrt(beta) (Rombach et al. 2022, latent diffusion's schedule)."""
    return torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float64) ** 2


def cosine_betas(T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """abar(t) = cos^2(((t + s)/(1 + s)) pi/2) / abar(0), offset s, betas clipped (Nichol & Dhariwal 2021, eq. 17)."""

    def abar(t: Tensor) -> Tensor:
        return torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2 / math.cos(s / (1 + s) * math.pi / 2) ** 2

    return betas_from_alpha_bar(abar, T, max_beta)


def sigmoid_betas(T: int = 1000, start: float = -3.0, end: float = 3.0, tau: float = 1.0,
                  max_beta: float = 0.999) -> Tensor:
    """abar(t) from a shifted, scaled sigmoid of t (Chen 2023, "On the importance of noise scheduling", Alg. 1)."""
    v_start = 1 / (1 + math.exp(-start / tau))
    v_end = 1 / (1 + math.exp(-end / tau))

    def abar(t: Tensor) -> Tensor:
        out = (v_end - torch.sigmoid((t * (end - start) + start) / tau)) / (v_end - v_start)
        return out.clamp(min=1e-12, max=1.0)

    return betas_from_alpha_bar(abar, T, max_beta)


def logsnr_linear_betas(T: int = 1000, logsnr_max: float = 10.0, logsnr_min: float = -10.0,
                        max_beta: float = 0.999) -> Tensor:
    """log-SNR linear in t from logsnr_max to logsnr_min, abar = sigmoid(logsnr) (Kingma et al. 2021, VDM)."""

    def abar(t: Tensor) -> Tensor:
        return torch.sigmoid(logsnr_max + (logsnr_min - logsnr_max) * t)

    # abar(0) = sigmoid(logsnr_max) < 1: keep the first step's beta from that level.
    t = torch.arange(T + 1, dtype=torch.float64) / T
    ab = torch.cat([torch.ones(1, dtype=torch.float64), abar(t[1:])])
    return (1.0 - ab[1:] / ab[:-1]).clamp(min=0.0, max=max_beta)


def rescale_zero_terminal_snr(betas: Tensor) -> Tensor:
    """Shift and scale sqrt(abar) so abar_T = 0 while abar_1 is kept (Lin et al. 2024, Algorithm 1)."""
    sqrt_ab = torch.cumprod(1.0 - betas.double(), 0).sqrt()
    first, last = sqrt_ab[0].clone(), sqrt_ab[-1].clone()
    sqrt_ab = (sqrt_ab - last) * first / (first - last)
    ab = sqrt_ab**2
    alphas = torch.cat([ab[:1], ab[1:] / ab[:-1]])
    return 1.0 - alphas


def alphas_cumprod(betas: Tensor) -> Tensor:
    """abar_t = prod_{s<=t} (1 - beta_s) (Ho et al. 2020, eq. 4)."""
    return torch.cumprod(1.0 - betas.double(), 0)


def snr(alpha_bar: Tensor) -> Tensor:
    """SNR = abar / (1 - abar) (Kingma et al. 2021, eq. 2 in VP form)."""
    return alpha_bar / (1.0 - alpha_bar)


def logsnr(alpha_bar: Tensor) -> Tensor:
    """log SNR = log abar - log(1 - abar)."""
    return torch.log(alpha_bar) - torch.log1p(-alpha_bar)


BETA_SCHEDULES: dict[str, Callable[..., Tensor]] = {
    "linear": linear_betas,
    "scaled_linear": scaled_linear_betas,
    "cosine": cosine_betas,
    "sigmoid": sigmoid_betas,
    "logsnr_linear": logsnr_linear_betas,
}


def make_betas(name: str, T: int, zero_terminal_snr: bool = False, **kwargs: float) -> Tensor:
    """A named beta table of length T, optionally rescaled to zero terminal SNR."""
    if name not in BETA_SCHEDULES:
        raise ValueError(f"unknown beta schedule {name!r}; choose one of {sorted(BETA_SCHEDULES)}")
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"number of steps T must be a positive integer, got {T!r}")
    betas = BETA_SCHEDULES[name](T, **kwargs)
    return rescale_zero_terminal_snr(betas) if zero_terminal_snr else betas
