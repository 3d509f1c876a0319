"""DPM-Solver++ (Lu et al. 2022b): exponential integrators of dx/dlambda = D - x in the data-prediction form.

VE coordinates: alpha = 1, lambda = -log sigma, a step s -> s' has h = log(s / s') and e^-h = s'/s. The exact solution
is x' = (s'/s) x + int_0^h e^-(h - tau) D(lambda + tau) dtau; DPM-Solver-1 (= DDIM) freezes D. A step that ends at
sigma = 0 (h infinite) is that first-order step, which lands on D(x, sigma). Multistep history lives in locals.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch

from ..denoiser import sigma_batch
from .common import Callback, ancestral_split, check_sigmas, exp_integrals, noise_like, report
from .method import Method

Tensor = torch.Tensor


@torch.no_grad()
def sample_dpmpp_2s(denoiser: Any, x: Tensor, sigmas: Tensor, *, generator: torch.Generator | None = None,
                    callback: Callback | None = None, eta: float = 0.0, s_noise: float = 1.0, **cond: Any) -> Tensor:
    """DPM-Solver++(2S), single-step with r = 1/2 (Lu et al. 2022b, Alg. 1); eta > 0 steps to sigma_down and adds
    sigma_up noise (the ancestral split of DDIM, Song et al. 2021, eq. 16)."""
    sigmas = check_sigmas(x, sigmas).tolist()
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        x0 = denoiser(x, sigma_batch(s, x), **cond)
        report(callback, i, x, s, s_next, x0)
        s_down, s_up = ancestral_split(s, s_next, eta)
        if s_down == 0:
            x = x0
        else:
            s_mid = math.sqrt(s * s_down)  # lambda + h/2
            u = torch.lerp(x0, x, s_mid / s)
            x0_mid = denoiser(u, sigma_batch(s_mid, x), **cond)  # D_i = (1 - 1/2r) D + 1/2r D_mid = D_mid
            x = torch.lerp(x0_mid, x, s_down / s)
        if s_up > 0:
            x = x + s_up * s_noise * noise_like(x, generator)
    return x


@torch.no_grad()
def sample_dpmpp_2m(denoiser: Any, x: Tensor, sigmas: Tensor, *, generator: torch.Generator | None = None,
                    callback: Callback | None = None, **cond: Any) -> Tensor:
    """DPM-Solver++(2M), multistep (Lu et al. 2022b, Alg. 2): D = (1 + 1/2r) D_(i-1) - 1/2r D_(i-2), r = h_(i-1)/h_i."""
    sigmas = check_sigmas(x, sigmas).tolist()
    x0_prev, h_prev = None, 0.0
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        x0 = denoiser(x, sigma_batch(s, x), **cond)
        report(callback, i, x, s, s_next, x0)
        if s_next == 0:
            x = x0
            continue
        h = math.log(s / s_next)
        D = x0 if x0_prev is None else torch.lerp(x0, x0_prev, -h / (2 * h_prev))  # x0 + (x0 - x0_prev) / 2r
        x = torch.lerp(D, x, s_next / s)  # (s'/s) x + (1 - e^-h) D
        x0_prev, h_prev = x0, h
    return x


@torch.no_grad()
def sample_dpmpp_3m(denoiser: Any, x: Tensor, sigmas: Tensor, *, generator: torch.Generator | None = None,
                    callback: Callback | None = None, **cond: Any) -> Tensor:
    """DPM-Solver++(3M), multistep (Lu et al. 2022b, eq. 9 expanded to 2nd order, cf. its Appendix B): D' and D'' at
    lambda_i from the quadratic through the last three D, weighted by the exact integrals I_1, I_2."""
    sigmas = check_sigmas(x, sigmas).tolist()
    hist: list[tuple[float, Tensor]] = []  # (lambda, D) of the last two steps, oldest first
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        x0 = denoiser(x, sigma_batch(s, x), **cond)
        report(callback, i, x, s, s_next, x0)
        if s_next == 0:
            x = x0
            continue
        lam, h = -math.log(s), math.log(s / s_next)
        _, I1, I2 = exp_integrals(h, 3)
        x_next = torch.lerp(x0, x, s_next / s)  # (s'/s) x + I_0 D, I_0 = 1 - s'/s
        if hist:
            # I_1 D' + I_2 D'' with D' = d1 + h1 c, D'' = 2c from the divided differences d1 = (D - D_1) / h1,
            # e = (D_1 - D_2) / h2, c = (d1 - e) / (h1 + h2): = (I_1 + q) d1 - q e with q = (I_1 h1 + 2 I_2) / (h1 + h2)
            lam1, x01 = hist[-1]
            h1 = lam - lam1
            h2 = lam1 - hist[0][0] if len(hist) == 2 else 0.0
            q = (I1 * h1 + 2 * I2) / (h1 + h2) if h2 else 0.0
            w = (I1 + q) / h1
            x_next.add_(x0, alpha=w).add_(x01, alpha=-w - (q / h2 if h2 else 0.0))
            if h2:
                x_next.add_(hist[0][1], alpha=q / h2)
        x = x_next
        hist = (hist + [(lam, x0)])[-2:]
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde(denoiser: Any, x: Tensor, sigmas: Tensor, *, generator: torch.Generator | None = None,
                        callback: Callback | None = None, eta: float = 1.0, s_noise: float = 1.0,
                        solver_type: str = "midpoint", **cond: Any) -> Tensor:
    """SDE-DPM-Solver++(2M) (Lu et al. 2022b, Appendix; eta = 1 is their SDE): the exact step of
    dx = (1 + eta)(D - x) dlambda + sigma sqrt(2 eta) dw with D linear in lambda, noise sigma' sqrt(1 - e^(-2 eta h)).

    With k = (1 + eta) h: x' = (s'/s) e^(-eta h) x + (1 - e^-k) D + c (D - D_prev) / r + noise, where c = (1 - e^-k) / 2
    ("midpoint", the paper's form; eta = 0 is DPM-Solver++(2M)) or the exact 1 + expm1(-k) / k ("taylor").
    """
    if solver_type not in ("midpoint", "taylor"):
        raise ValueError(f"solver_type must be 'midpoint' or 'taylor', got {solver_type!r}")
    sigmas = check_sigmas(x, sigmas).tolist()
    x0_prev, h_prev = None, 0.0
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        x0 = denoiser(x, sigma_batch(s, x), **cond)
        report(callback, i, x, s, s_next, x0)
        if s_next == 0:
            x = x0
            continue
        h = math.log(s / s_next)
        k = (1 + eta) * h
        x = torch.lerp(x0, x, math.exp(-k))  # e^-k = (s'/s) e^(-eta h)
        if x0_prev is not None:
            c = -0.5 * math.expm1(-k) if solver_type == "midpoint" else 1 + math.expm1(-k) / k
            x.add_(x0, alpha=c * h / h_prev).add_(x0_prev, alpha=-c * h / h_prev)
        if eta > 0:
            x = x + s_next * math.sqrt(-math.expm1(-2 * eta * h)) * s_noise * noise_like(x, generator)
        x0_prev, h_prev = x0, h
    return x


DPMPP_2S = Method(sample_dpmpp_2s, "ODE", 2, 2, final_evals=1)
DPMPP_2M = Method(sample_dpmpp_2m, "ODE", 2, 1, grid="exponential")
DPMPP_3M = Method(sample_dpmpp_3m, "ODE", 3, 1, grid="exponential")
DPMPP_2S_ANCESTRAL = Method(partial(sample_dpmpp_2s, eta=1.0), "SDE", 2, 2, final_evals=1)
DPMPP_2M_SDE = Method(sample_dpmpp_2m_sde, "SDE", 2, 1, grid="exponential")
