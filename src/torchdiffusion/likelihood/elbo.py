"""Variational bounds in bits/dim: the discrete-time DDPM bound from a stratified subset of its T terms, and the
continuous-time VDM bound for any denoiser.

The continuous bound (Kingma et al. 2021, eq. 11 and 17) in VE coordinates, SNR = 1 / sigma^2, lambda = log SNR:

    -log p(x0) <= KL(q(x_max | x0) || N(0, sigma_max^2 I)) + E[-log p(x0 | x_min)]
                  + 1/2 int_{lambda_min}^{lambda_max} e^lambda E_eps ||x0 - D(x0 + sigma eps, sigma)||^2 dlambda

with sigma = e^(-lambda/2); the integral is -1/2 int SNR'(t) ||x0 - x0_hat||^2 dt of eq. 17 after t -> lambda
(dSNR = e^lambda dlambda), and e^lambda ||x0 - D||^2 = ||eps - eps_hat||^2. It is estimated with lambda stratified
uniformly on [lambda_min, lambda_max] (importance sampling uniform in log-SNR, weight lambda_max - lambda_min), or
from a piecewise-constant density fitted to the integrand on pilot data (proposal.py), weight 1 / q(lambda).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..checks import check_data
from ..model_denoiser import ModelDenoiser
from ..sampling.common import noise_like
from .vlb import discretized_gaussian_log_likelihood, normal_kl, prior_kl, vlb_terms
from .bpd import bits_per_dim
from .proposal import LogSNRProposal, diffusion_integrand, log_snr_range

Tensor = torch.Tensor
DECODERS = ("discretized", "gaussian")


def stratified_vlb_bpd(model: ModelDenoiser, x0: Tensor, steps: int, *, generator: torch.Generator | None = None,
                       clip_denoised: bool = True, **cond: Any) -> dict[str, Tensor]:
    """Unbiased estimate of full_vlb_bpd from `steps` of the T terms (Ho et al. 2020, eq. 5): {0..T-1} cut into `steps`
    contiguous strata of n_j terms, one t uniform in each per sample, weighted n_j (stratified sampling, Cochran 1977,
    ch. 5); steps = T is the full sum. x0 on the uint8 lattice; returns bpd and prior_bpd, (B,)."""
    process = model.process
    if not process.discrete:
        raise TypeError("the discrete variational bound needs a DiscreteVP process")
    if not 1 <= steps <= process.T:
        raise ValueError(f"steps must lie in [1, T={process.T}], got {steps}")
    check_data("x0", x0, discrete=True)
    B, D = x0.shape[0], x0[0].numel()
    edges = [j * process.T // steps for j in range(steps + 1)]
    total = torch.zeros(B, dtype=torch.float64, device=x0.device)
    for lo, hi in zip(edges[:-1], edges[1:]):
        u = torch.rand(B, generator=generator, dtype=torch.float64).to(x0.device)
        t = (lo + (u * (hi - lo)).floor().long()).clamp(max=hi - 1)
        xt = process.marginal(x0, t.double(), noise_like(x0, generator))
        total += (hi - lo) * vlb_terms(model, x0, t, xt, clip_denoised=clip_denoised, **cond).double()
    prior = prior_kl(process, x0).double()
    scale = 1 / (D * math.log(2))
    return {"bpd": (total + prior) * scale, "prior_bpd": prior * scale}


def vdm_diffusion_loss(denoiser: Any, x0: Tensor, *, sigma_min: float, sigma_max: float, samples: int = 1,
                       proposal: LogSNRProposal | None = None, generator: torch.Generator | None = None,
                       **cond: Any) -> Tensor:
    """L_inf = int f(lambda) dlambda, f = 1/2 e^lambda E_eps ||x0 - D(x0 + e^(-lambda/2) eps)||^2, in nats, (B, samples):
    one unbiased estimate f(lambda_j) / q(lambda_j) per stratum j of the proposal's CDF (Kingma et al. 2021, eq. 17);
    q is uniform on [lambda_min, lambda_max] unless a fitted `proposal` is given (fit_log_snr_proposal)."""
    lam_min, lam_max = log_snr_range(sigma_min, sigma_max)
    q = LogSNRProposal.uniform(lam_min, lam_max) if proposal is None else proposal
    q.check_range(lam_min, lam_max)
    out = []
    for j in range(samples):
        u = torch.rand(x0.shape[0], generator=generator, dtype=torch.float64).to(x0.device)
        lam, density = q.sample((j + u) / samples)
        f = diffusion_integrand(denoiser, x0, lam, generator, **cond)
        out.append(f / density.to(f.dtype))
    return torch.stack(out, 1)


def vdm_elbo(denoiser: Any, x0: Tensor, *, sigma_min: float, sigma_max: float, samples: int = 1,
             decoder: str = "discretized", bins: int = 256, proposal: LogSNRProposal | None = None,
             generator: torch.Generator | None = None, **cond: Any) -> dict[str, Tensor]:
    """The continuous-time VDM bound (Kingma et al. 2021, eq. 11, 17) for any denoiser, per row: elbo (nats, a lower
    bound on log p(x0)), bpd, and the losses prior, diffusion, recon (nats) and diffusion_se.

    prior: KL(N(x0, sigma_max^2 I) || N(0, sigma_max^2 I)) = ||x0||^2 / (2 sigma_max^2). recon at x_min = x0 +
    sigma_min eps: "discretized", -log of N(x_min, sigma_min^2) integrated over x0's bin of the `bins`-level lattice on
    [-1, 1] (Ho et al. 2020, eq. 13; bpd is then of the discrete data); "gaussian", E[-log N(x0; x_min, sigma_min^2 I)]
    = d/2 (1 + log 2 pi sigma_min^2) exactly (continuous data; bpd is -elbo / (d ln 2)). proposal: the log-SNR
    importance density of the diffusion loss (default uniform; see fit_log_snr_proposal).
    """
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
    check_data("x0", x0, discrete=decoder == "discretized")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    d = x0[0].numel()
    log_var = torch.full_like(x0, 2 * math.log(sigma_max))
    prior = normal_kl(x0, log_var, torch.zeros_like(x0), log_var).flatten(1).sum(1)
    diff = vdm_diffusion_loss(denoiser, x0, sigma_min=sigma_min, sigma_max=sigma_max, samples=samples,
                              proposal=proposal, generator=generator, **cond)
    if decoder == "discretized":
        x_min = x0 + sigma_min * noise_like(x0, generator)
        log_scale = torch.full_like(x0, math.log(sigma_min))
        recon = -discretized_gaussian_log_likelihood(x0, x_min, log_scale, bins).flatten(1).sum(1)
    else:
        recon = torch.full_like(prior, 0.5 * d * (1 + math.log(2 * math.pi * sigma_min**2)))
    diffusion = diff.mean(1)
    se = diff.std(1) / math.sqrt(samples) if samples > 1 else torch.full_like(diffusion, float("nan"))
    elbo = -(prior + diffusion + recon)
    return {"elbo": elbo, "bpd": bits_per_dim(elbo, d, dequantization="none"), "prior": prior,
            "diffusion": diffusion, "recon": recon, "diffusion_se": se}
