"""Posterior sampling by replacement: after each reverse step the measured part of x is overwritten by the measurement
noised to the step's level (Song et al. 2021, App. I.2, "imputation"), and RePaint's resampling with jumps on top of
it (Lugmayr et al. 2022, Alg. 1 and Sec. 4.2)."""

from __future__ import annotations

from typing import Any

import torch

from ..denoiser import sigma_batch
from ..sampling.common import Generators, check_sigmas, noise_like
from .common import Spectral, check_eta, ddim_step, spectral
from .method import InverseMethod
from .operators import Operator

Tensor = torch.Tensor


def replace(x: Tensor, sp: Spectral, s: float, generator: Generators) -> Tensor:
    """x with each observed spectral coordinate set to y_bar_i + sqrt(s^2 - tau_i^2) z where s >= tau_i: y_bar_i is
    x0_i noised to tau_i, so this is x0_i noised to s (a coordinate noisier than s keeps the model's value)."""
    xb = sp.svd.vt(x)  # (B, n)
    take = sp.observed & (sp.tau <= s)
    if not bool(take.any()):
        return x
    noised = sp.y_bar + (s**2 - torch.where(take, sp.tau, 0) ** 2).clamp_min(0).sqrt() * noise_like(xb, generator)
    return sp.svd.v(torch.where(take, noised, xb))


@torch.no_grad()
def solve_replacement(denoiser: Any, y: Tensor, operator: Operator, x: Tensor, sigmas: Tensor, *, noise_std: float,
                      generator: Generators = None, eta: float = 1.0) -> Tensor:
    """Song et al. 2021 (App. I.2): a DDIM(eta) step of the unconditional model (eta = 1: ancestral), then the
    observed part replaced by the noised measurement (`replace`)."""
    check_eta(eta)
    sp = spectral(operator, y, tuple(x.shape[1:]), noise_std)
    sig = check_sigmas(x, sigmas).tolist()
    for s, s_next in zip(sig[:-1], sig[1:]):
        x0 = denoiser(x, sigma_batch(s, x))
        x = replace(ddim_step(x, x0, s, s_next, eta, generator), sp, s_next, generator)
    return x


def repaint_schedule(steps: int, jump_length: int, jump_n_sample: int) -> list[int]:
    """The grid indices RePaint visits (0 = sigma_max, steps = sigma 0): down one level at a time, and at every
    jump_length-th level above the last, back up jump_length levels, jump_n_sample - 1 times (Lugmayr et al. 2022,
    Sec. 4.2, their `get_schedule_jump`)."""
    if jump_length < 1 or jump_n_sample < 1:
        raise ValueError(f"jump_length and jump_n_sample must be >= 1, got {jump_length}, {jump_n_sample}")
    jumps = {t: jump_n_sample - 1 for t in range(jump_length, steps - jump_length + 1, jump_length)}  # t = steps - i
    i, path = 0, [0]
    while i < steps:
        i += 1
        path.append(i)
        t = steps - i
        if jumps.get(t, 0) > 0:
            jumps[t] -= 1
            i -= jump_length
            path.append(i)
    return path


def repaint_calls(steps: int, options: dict[str, Any]) -> int:
    """Denoiser calls of RePaint's schedule: one per step down."""
    path = repaint_schedule(steps, options["jump_length"], options["jump_n_sample"])
    return sum(b > a for a, b in zip(path[:-1], path[1:]))


@torch.no_grad()
def solve_repaint(denoiser: Any, y: Tensor, operator: Operator, x: Tensor, sigmas: Tensor, *, noise_std: float,
                  generator: Generators = None, jump_length: int = 5, jump_n_sample: int = 2) -> Tensor:
    """RePaint (Lugmayr et al. 2022, Alg. 1): each step down is DDPM's ancestral step with the known part replaced;
    each jump up renoises x from sigma to sigma_up (x + sqrt(sigma_up^2 - sigma^2) z, the forward process), so the
    known and generated parts are harmonised again."""
    sp = spectral(operator, y, tuple(x.shape[1:]), noise_std)
    sig = check_sigmas(x, sigmas).tolist()
    path = repaint_schedule(len(sig) - 1, jump_length, jump_n_sample)
    for a, b in zip(path[:-1], path[1:]):
        s, s_next = sig[a], sig[b]
        if b > a:
            x0 = denoiser(x, sigma_batch(s, x))
            x = replace(ddim_step(x, x0, s, s_next, 1.0, generator), sp, s_next, generator)
        else:
            x = x + (s_next**2 - s**2) ** 0.5 * noise_like(x, generator)
    return x


REPLACEMENT = InverseMethod(solve_replacement, "projection", "x0 with A x0 = y (noise-free); approximate posterior")
REPAINT = InverseMethod(solve_repaint, "projection", "as replacement, harmonised by resampling jumps",
                        cost=repaint_calls)
