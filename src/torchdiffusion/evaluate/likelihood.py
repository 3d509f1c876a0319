"""Bits/dim of held-out data for `eval`: a variational bound and the probability-flow ODE, each with its run time."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from ..likelihood import (bits_per_dim, fit_log_snr_proposal, gaussian_prior_log_prob, ode_log_likelihood,
                          stratified_vlb_bpd, uniform_dequantize, vdm_elbo)

Tensor = torch.Tensor
PILOT_ROWS = 16  # rows whose integrand fits the continuous bound's log-SNR proposal (32 bins: 512 denoiser rows)


@dataclass
class BpdOptions:
    elbo_steps: int = 100         # DDPM: strata of the T-term bound; continuous: lambda strata of the VDM integral
    ode_rtol: float = 1e-5        # Dormand-Prince tolerances (Song et al. 2021 use 1e-5)
    ode_atol: float = 1e-5
    probes: int = 1               # Hutchinson probes (Rademacher), fixed over each solve
    batch_size: int = 50
    seed: int = 0


def _summary(values: Tensor, seconds: float, **extra: Any) -> dict[str, Any]:
    v = values.double()
    se = float(v.std() / math.sqrt(len(v))) if len(v) > 1 else float("nan")
    return {"bpd": float(v.mean()), "se": se, "num": len(v), "seconds": round(seconds, 2), **extra}


def _batches(x: Tensor, size: int) -> list[Tensor]:
    return [x[i:i + size] for i in range(0, len(x), size)]


def elbo_bpd(model: Any, x0: Tensor, cond: dict[str, Tensor], continuous_data: bool, o: BpdOptions) -> dict[str, Any]:
    """Upper bound on bits/dim: the stratified T-term DDPM bound for a discrete-time VP model (Ho et al. 2020, eq. 5),
    else the continuous-time VDM bound (Kingma et al. 2021) with a discretized decoder (images) or a Gaussian one
    (continuous toy data, bits/dim of a density)."""
    g = torch.Generator().manual_seed(o.seed)
    t0 = time.perf_counter()
    out, proposal = [], None
    ddpm_bound = model.sigma_table is not None and not continuous_data
    with torch.no_grad():
        if not ddpm_bound:
            # log-SNR importance density fitted on the first rows (fresh draws keep each estimate unbiased)
            pilot = {k: v[:PILOT_ROWS] for k, v in cond.items()}
            proposal = fit_log_snr_proposal(model, x0[:PILOT_ROWS], sigma_min=model.sigma_min,
                                            sigma_max=model.sigma_max, generator=g, **pilot)
        for i, xb in enumerate(_batches(x0, o.batch_size)):
            c = {k: v[i * o.batch_size:i * o.batch_size + len(xb)] for k, v in cond.items()}
            if ddpm_bound:
                steps = min(o.elbo_steps, model.process.T)
                out.append(stratified_vlb_bpd(model, xb, steps, generator=g, **c)["bpd"])
                method = f"stratified DDPM bound, {steps} of T={model.process.T} terms per image"
            else:
                decoder = "gaussian" if continuous_data else "discretized"
                r = vdm_elbo(model, xb, sigma_min=model.sigma_min, sigma_max=model.sigma_max,
                             samples=o.elbo_steps, decoder=decoder, proposal=proposal, generator=g, **c)
                out.append(r["bpd"])
                method = (f"continuous VDM bound, {o.elbo_steps} log-SNR strata of a proposal fitted on "
                          f"{min(PILOT_ROWS, len(x0))} rows, {decoder} decoder")
    return _summary(torch.cat(out), time.perf_counter() - t0, method=method)


def ode_bpd(model: Any, x0: Tensor, cond: dict[str, Tensor], continuous_data: bool, o: BpdOptions) -> dict[str, Any]:
    """Bits/dim by the probability-flow ODE (Song et al. 2021): images uniformly dequantized (an upper bound on the
    discrete bits/dim), Hutchinson trace with Rademacher probes; toy data exact trace, no dequantization. The prior is
    the process's own x_T distribution in VE coordinates."""
    g = torch.Generator().manual_seed(o.seed + 1)
    prior_std = model.process.prior_std_ve()
    d = x0[0].numel()
    t0 = time.perf_counter()
    out, nfe = [], []
    for i, xb in enumerate(_batches(x0, o.batch_size)):
        c = {k: v[i * o.batch_size:i * o.batch_size + len(xb)] for k, v in cond.items()}
        x = xb if continuous_data else uniform_dequantize(xb, generator=g)
        logp, stats = ode_log_likelihood(
            model, x, sigma_min=model.sigma_min, sigma_max=model.sigma_max,
            trace="exact" if continuous_data else "hutchinson", probes=o.probes, probe="rademacher",
            rtol=o.ode_rtol, atol=o.ode_atol, generator=g, return_stats=True,
            prior_log_prob=lambda z: gaussian_prior_log_prob(z, prior_std), **c)
        out.append(bits_per_dim(logp, d, dequantization="none" if continuous_data else "uniform"))
        nfe.append(stats["nfe"])
    method = ("probability-flow ODE, exact trace" if continuous_data else
              f"probability-flow ODE, Hutchinson ({o.probes} Rademacher probe), uniform dequantization")
    return _summary(torch.cat(out), time.perf_counter() - t0, method=method, rtol=o.ode_rtol, atol=o.ode_atol,
                    nfe_per_batch=nfe, sigma_min=model.sigma_min, sigma_max=model.sigma_max)
