"""The DDPM variational bound: closed-form Gaussian KLs and the discretized-Gaussian decoder L_0 (its training
loss L_hybrid is in losses.hybrid).

Data convention: uint8 pixels k in {0..255} scaled to x = k / 127.5 - 1 in [-1, 1]; L_0 integrates the decoder
Gaussian over each pixel's bin of width 2/255, the outermost bins extended to +-infinity (Ho et al. 2020, eq. 13).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..checks import check_data
from ..model_denoiser import ModelDenoiser
from ..processes import DiscreteVP, expand_like

Tensor = torch.Tensor


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) elementwise, in nats."""
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1)


def standard_normal_cdf(x: Tensor) -> Tensor:
    """Phi(x) = (1 + erf(x / sqrt 2)) / 2."""
    return 0.5 * (1 + torch.erf(x / math.sqrt(2)))


def discretized_gaussian_log_likelihood(x: Tensor, mean: Tensor, log_scale: Tensor, bins: int = 256) -> Tensor:
    """log P(x) of data on a lattice of `bins` levels in [-1, 1] under N(mean, e^(2 log_scale)) (Ho et al. 2020, eq. 13)."""
    half = 1.0 / (bins - 1)
    inv = torch.exp(-log_scale)
    upper = standard_normal_cdf((x - mean + half) * inv)
    lower = standard_normal_cdf((x - mean - half) * inv)
    # edges open to +-infinity; clamp before log for numerical safety in the tails
    log_upper = torch.log(upper.clamp(min=1e-12))
    log_one_minus_lower = torch.log((1 - lower).clamp(min=1e-12))
    mid = torch.log((upper - lower).clamp(min=1e-12))
    return torch.where(x < -1 + 1e-3, log_upper, torch.where(x > 1 - 1e-3, log_one_minus_lower, mid))


def model_log_variance(process: DiscreteVP, t: Tensor, frac: Tensor | None, x: Tensor,
                       fixed: str = "beta_tilde") -> Tensor:
    """log variance of p(x_{t-1} | x_t): learned interpolation frac log beta + (1-frac) log beta-tilde
    (Nichol & Dhariwal 2021, eq. 15), or fixed beta-tilde (clipped at t = 0) or beta."""
    log_small = expand_like(process.posterior_log_variance_clipped(t), x)
    log_large = expand_like(torch.log(process.betas[t.long()]), x)
    if frac is not None:
        return frac * log_large + (1 - frac) * log_small
    return log_small if fixed == "beta_tilde" else log_large


def vlb_terms(model: ModelDenoiser, x0: Tensor, t: Tensor, xt: Tensor, *, detach_mean: bool = False,
              clip_denoised: bool = False, fixed: str = "beta_tilde", **cond: Any) -> Tensor:
    """L_{t-1} = KL(q(x_{t-1}|x_t,x0) || p(x_{t-1}|x_t)) for t > 0 and L_0 = -log p(x0|x1) at t = 0, in nats, (B,)."""
    process = model.process
    if not process.discrete:
        raise TypeError("the discrete variational bound needs a DiscreteVP process")
    t = t.long()
    sig = process.sigmas_ve[t].to(x0.dtype)
    a = expand_like(process.alpha(t.double()), x0)
    x0_hat, frac = model.forward_with_variance(xt / a, sig, **cond)
    if clip_denoised:
        x0_hat = x0_hat.clamp(-1, 1)
    if detach_mean:  # L_vlb trains only the variance in L_hybrid (Nichol & Dhariwal 2021, sec. 3.1)
        x0_hat = x0_hat.detach()
    mean, _ = process.posterior(x0_hat, xt, t)
    logvar = model_log_variance(process, t, frac, x0, fixed)
    true_mean, _ = process.posterior(x0, xt, t)
    true_logvar = expand_like(process.posterior_log_variance_clipped(t), x0)
    kl = normal_kl(true_mean, true_logvar, mean, logvar).flatten(1).sum(1)
    nll = -discretized_gaussian_log_likelihood(x0, mean, 0.5 * logvar).flatten(1).sum(1)
    return torch.where(t == 0, nll, kl)


def prior_kl(process: DiscreteVP, x0: Tensor) -> Tensor:
    """L_T = KL(q(x_T | x0) || N(0, I)) in nats, (B,)."""
    T = torch.full((x0.shape[0],), process.T - 1)
    a = expand_like(process.alpha(T.double()), x0)
    logvar = expand_like(torch.log(1 - process.alphas_cumprod[T]), x0)
    return normal_kl(a * x0, logvar, torch.zeros_like(x0), torch.zeros_like(x0)).flatten(1).sum(1)


@torch.no_grad()
def full_vlb_bpd(model: ModelDenoiser, x0: Tensor, *, generator: torch.Generator | None = None,
                 clip_denoised: bool = True, **cond: Any) -> dict[str, Tensor]:
    """-ELBO in bits/dim, summing all T terms and the prior (Ho et al. 2020, eq. 5); x0 on the uint8 lattice."""
    check_data("x0", x0, discrete=True)
    process = model.process
    B, D = x0.shape[0], x0[0].numel()
    terms = torch.zeros(B, process.T, dtype=torch.float64)
    for k in range(process.T):
        t = torch.full((B,), k, device=x0.device)
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        xt = process.marginal(x0, t.double(), eps)
        terms[:, k] = vlb_terms(model, x0, t, xt, clip_denoised=clip_denoised, **cond).double()
    prior = prior_kl(process, x0).double()
    total = terms.sum(1) + prior
    scale = 1 / (D * math.log(2))
    return {"bpd": total * scale, "prior_bpd": prior * scale, "decoder_bpd": terms[:, 0] * scale,
            "terms_bpd": terms * scale}
