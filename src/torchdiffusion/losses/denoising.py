"""Denoising losses: L_simple on any target, with weightings expressed as weights on ||x0_hat - x0||^2.

Every prediction's squared error is a multiple r(t) of the x0 error (`Prediction.error_factor`: eps: SNR;
v: (alpha^2+sigma^2)^2/sigma^2; edm: 1/c_out^2, ...). A weighting w(t) in x0 space is applied to the raw-target error as w(t) / r(t), so
"snr" with eps-prediction is L_simple and min-SNR-gamma means the same thing for every target.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..checks import check_batch, check_per_sample
from ..model_denoiser import ModelDenoiser
from ..processes import GaussianProcess
from ..rng import randn

Tensor = torch.Tensor
WEIGHTINGS = ("uniform", "snr", "min_snr", "elbo", "edm")
T_SAMPLINGS = ("uniform", "lognormal", "logit_normal")


def x0_weight(weighting: str, process: GaussianProcess, t: Tensor, gamma: float = 5.0,
              sigma_data: float = 0.5) -> Tensor:
    """w(t) on the x0 error: SNR (Ho et al. 2020's L_simple), min(SNR, gamma) (Hang et al. 2023),
    the ELBO's -lambda'(t) SNR(t) / 2 (Kingma et al. 2021, eq. 17), or EDM's lambda(sigma) (Karras et al. 2022)."""
    snr = torch.exp(process.logsnr(t))
    if weighting == "snr":
        return snr
    if weighting == "min_snr":
        return snr.clamp(max=gamma)
    if weighting == "elbo":
        if process.discrete:  # L_{t-1} = (SNR(t-1) - SNR(t)) / 2 ||dx0||^2, summed over T steps
            tl = t.long()
            prev = torch.where(tl > 0, torch.exp(process.logsnr_table[(tl - 1).clamp(min=0)]),
                               torch.full_like(snr, float("inf")))
            w = torch.where(tl > 0, 0.5 * (prev - snr), torch.zeros_like(snr))
            return w * process.T
        return -0.5 * process.dlogsnr_dt(t) * snr * (process.t_max - process.t_min)
    if weighting == "edm":
        s = process.sigma_ve(t)
        return (s**2 + sigma_data**2) / (s * sigma_data) ** 2
    raise ValueError(f"unknown loss weighting {weighting!r}; choose one of {WEIGHTINGS}")


def logit_normal_density(t: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    """Density of t = sigmoid(n), n ~ N(mean, std^2) on (0, 1): N(logit t; mean, std^2) / (t (1 - t))
    (Esser et al. 2024, eq. 19)."""
    z = (torch.log(t) - torch.log1p(-t) - mean) / std
    return torch.exp(-0.5 * z**2) / (std * math.sqrt(2 * math.pi) * t * (1 - t))


def sample_t(process: GaussianProcess, n: int, *, generator: torch.Generator | None = None,
             method: str = "uniform", p_mean: float = -1.2, p_std: float = 1.2, logit_mean: float = 0.0,
             logit_std: float = 1.0) -> Tensor:
    """Training times: uniform integers for DDPM, uniform in [t_min, t_max], EDM's log-normal sigma, or logit-normal
    t = t_min + sigmoid(n) (t_max - t_min), n ~ N(logit_mean, logit_std^2) (Esser et al. 2024, eq. 19)."""
    if method == "logit_normal":
        u = torch.sigmoid(logit_mean + logit_std * torch.randn(n, generator=generator, dtype=torch.float64))
        t = process.t_min + u * (process.t_max - process.t_min)
        return t.round() if process.discrete else t
    if method == "lognormal":  # ln sigma ~ N(P_mean, P_std^2) (Karras et al. 2022, Table 1)
        sig = torch.exp(p_mean + p_std * torch.randn(n, generator=generator, dtype=torch.float64))
        return process.t_of_sigma_ve(sig).clamp(process.t_min, process.t_max)
    if method != "uniform":
        raise ValueError(f"unknown t sampling {method!r}; choose one of {T_SAMPLINGS}")
    if process.discrete:
        return torch.randint(0, process.T, (n,), generator=generator).double()
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    return process.t_min + u * (process.t_max - process.t_min)


def diffusion_loss(model: ModelDenoiser, x0: Tensor, *, weighting: str = "uniform", t: Tensor | None = None,
                   eps: Tensor | None = None, generator: torch.Generator | None = None, t_sampling: str = "uniform",
                   gamma: float = 5.0, **cond: Any) -> Tensor:
    """Per-sample denoising loss (B,): w(t)/r(t) * mean ||raw_hat - raw_target||^2 (Ho et al. 2020, eq. 14)."""
    check_batch("x0", x0, min_dims=2)
    B = x0.shape[0]
    if t is not None:
        check_per_sample("t", t, B)
    if eps is not None:
        check_per_sample("eps", eps, B, shape=tuple(x0.shape[1:]))
    if t is None:
        t = sample_t(model.process, B, generator=generator, method=t_sampling).to(x0.device)
    if eps is None:
        eps = randn(x0.shape, generator, dtype=x0.dtype, device=x0.device)
    xt = model.process.marginal(x0, t, eps)
    out = model.raw(xt, t, **cond)
    if model.learned_variance:
        out = out.chunk(2, dim=1)[0]
    err = (out - model.training_target(x0, eps, xt, t)).pow(2).flatten(1).mean(1)
    if weighting == "uniform":
        return err
    w = x0_weight(weighting, model.process, t, gamma, model.sigma_data) / model.parameterization.error_factor(t)
    return w.to(err.dtype) * err


def edm_loss(model: ModelDenoiser, x0: Tensor, *, generator: torch.Generator | None = None,
             p_mean: float = -1.2, p_std: float = 1.2, **cond: Any) -> Tensor:
    """lambda(sigma) ||D(x0 + sigma n; sigma) - x0||^2 with ln sigma ~ N(P_mean, P_std^2) (Karras et al. 2022, eq. 8)."""
    t = sample_t(model.process, x0.shape[0], generator=generator, method="lognormal",
                 p_mean=p_mean, p_std=p_std).to(x0.device)
    return diffusion_loss(model, x0, weighting="edm", t=t, generator=generator, **cond)


def classifier_loss(model: ModelDenoiser, x0: Tensor, labels: Tensor, *, generator: torch.Generator | None = None,
                    t: Tensor | None = None, eps: Tensor | None = None) -> Tensor:
    """Cross-entropy of a noise-conditional classifier on x_t ~ q(x_t | x0), t uniform (Dhariwal & Nichol 2021, sec. 4.1).

    t and eps may be given (as the trainer does, drawn for a global batch); else they are drawn here."""
    if t is None:
        t = sample_t(model.process, x0.shape[0], generator=generator).to(x0.device)
    if eps is None:
        eps = randn(x0.shape, generator, dtype=x0.dtype, device=x0.device)
    logits = model.raw(model.process.marginal(x0, t, eps), t)
    return torch.nn.functional.cross_entropy(logits.float(), labels, reduction="none")
