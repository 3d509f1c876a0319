"""Importance sampling of log-SNR for the continuous-time bound: a piecewise-constant density on [lambda_min,
lambda_max] fitted to the integrand on pilot data (Kingma et al. 2021, Sec. 5 and App. I.2, minimise the variance of
the diffusion loss; here by a fitted proposal instead of a learned schedule).

For f(lambda) >= 0 the estimator f(lambda) / q(lambda), lambda ~ q, is unbiased for int f for any q > 0, and its
variance is smallest for q proportional to sqrt(E[f(lambda)^2]) over the data and noise (Owen, Monte Carlo theory,
methods and examples, 2013, Sec. 9.1). The fitted q mixes a floor of the uniform density in, so that q stays bounded
away from 0 where the pilot saw little.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ..sampling.common import noise_like

Tensor = torch.Tensor


def log_snr_range(sigma_min: float, sigma_max: float) -> tuple[float, float]:
    """[lambda_min, lambda_max] = [-2 log sigma_max, -2 log sigma_min], log-SNR in VE coordinates (SNR = 1/sigma^2)."""
    return -2 * math.log(sigma_max), -2 * math.log(sigma_min)


@dataclass(frozen=True)
class LogSNRProposal:
    """q(lambda) = probs[k] / width_k on bin k of `edges` (K + 1 increasing log-SNR values)."""

    edges: Tensor  # (K + 1,) float64
    probs: Tensor  # (K,) float64, positive, sums to 1

    def __post_init__(self) -> None:
        e, p = self.edges, self.probs
        if e.ndim != 1 or p.shape != (len(e) - 1,) or not bool((e[1:] > e[:-1]).all()):
            raise ValueError(f"need K + 1 increasing edges and K probabilities, got {tuple(e.shape)}, {tuple(p.shape)}")
        if not bool((p > 0).all()) or abs(float(p.sum()) - 1) > 1e-9:
            raise ValueError(f"probabilities must be positive and sum to 1, got {p.tolist()}")

    @staticmethod
    def uniform(lam_min: float, lam_max: float, bins: int = 1) -> LogSNRProposal:
        """The uniform density 1 / (lam_max - lam_min)."""
        return LogSNRProposal(torch.linspace(lam_min, lam_max, bins + 1, dtype=torch.float64),
                              torch.full((bins,), 1.0 / bins, dtype=torch.float64))

    def sample(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """lambda = F^-1(u) for u in [0, 1) (so stratified u give stratified lambda), and q(lambda); float64."""
        cdf = torch.cat([self.probs.new_zeros(1), self.probs.cumsum(0)])
        k = (torch.searchsorted(cdf, u.double(), right=True) - 1).clamp(0, len(self.probs) - 1)
        lo, width = self.edges[k], self.edges[k + 1] - self.edges[k]
        lam = lo + (u.double() - cdf[k]) / self.probs[k] * width
        return lam.clamp(self.edges[0], self.edges[-1]), self.probs[k] / width

    def check_range(self, lam_min: float, lam_max: float) -> None:
        """The proposal must cover exactly [lam_min, lam_max] of the bound it is used for."""
        lo, hi = float(self.edges[0]), float(self.edges[-1])
        if not (math.isclose(lo, lam_min, abs_tol=1e-9) and math.isclose(hi, lam_max, abs_tol=1e-9)):
            raise ValueError(f"the proposal covers log-SNR [{lo:.4g}, {hi:.4g}] but the bound integrates over "
                             f"[{lam_min:.4g}, {lam_max:.4g}]; fit it with the same sigma_min and sigma_max")


def diffusion_integrand(denoiser: Any, x0: Tensor, lam: Tensor, generator: torch.Generator | None,
                        **cond: Any) -> Tensor:
    """f(lambda) = 1/2 e^lambda ||x0 - D(x0 + e^(-lambda/2) eps, e^(-lambda/2))||^2 per row (Kingma et al. eq. 17)."""
    sigma = torch.exp(-0.5 * lam).to(x0.dtype)
    eps = noise_like(x0, generator)
    xs = x0 + sigma.reshape(-1, *[1] * (x0.ndim - 1)) * eps
    err = (x0 - denoiser(xs, sigma, **cond)).flatten(1).pow(2).sum(1)
    return 0.5 * torch.exp(lam).to(err.dtype) * err


def fit_log_snr_proposal(denoiser: Any, x0: Tensor, *, sigma_min: float, sigma_max: float, bins: int = 32,
                         floor: float = 0.1, generator: torch.Generator | None = None,
                         **cond: Any) -> LogSNRProposal:
    """q proportional to the RMS of the integrand per log-SNR bin over the pilot rows x0 (one stratified lambda per row
    and bin: bins * len(x0) denoiser rows), mixed with `floor` of the uniform density."""
    if bins < 1 or not 0 < floor <= 1:
        raise ValueError(f"need bins >= 1 and 0 < floor <= 1, got {bins}, {floor}")
    lam_min, lam_max = log_snr_range(sigma_min, sigma_max)
    edges = torch.linspace(lam_min, lam_max, bins + 1, dtype=torch.float64)
    rms = torch.empty(bins, dtype=torch.float64)
    for k in range(bins):
        u = torch.rand(x0.shape[0], generator=generator, dtype=torch.float64).to(x0.device)
        lam = edges[k] + u * (edges[k + 1] - edges[k])
        rms[k] = diffusion_integrand(denoiser, x0, lam, generator, **cond).double().pow(2).mean().sqrt()
    mass = rms * (edges[1:] - edges[:-1])  # sqrt(E f^2) integrated over each bin
    probs = (1 - floor) * mass / mass.sum() + floor / bins if float(mass.sum()) > 0 else torch.full_like(mass, 1 / bins)
    return LogSNRProposal(edges, probs / probs.sum())
