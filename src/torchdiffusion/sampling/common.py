"""Small helpers shared by every sampler: noise draws, per-batch sigma, callbacks."""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Sequence

import torch

from ..denoiser import all_finite
from ..rng import randn

Tensor = torch.Tensor
Callback = Callable[[dict[str, Any]], None]


Generators = torch.Generator | Sequence[torch.Generator] | None


def noise_like(x: Tensor, generator: Generators) -> Tensor:
    """Standard normal noise of x's shape, dtype and device, from an optional generator.

    A sequence of generators, one per row of x, makes each sample's noise its own stream: the same whatever
    the batch it is drawn in (drawn on the CPU, then moved to x's device).
    """
    if generator is None or isinstance(generator, torch.Generator):
        return randn(x.shape, generator, dtype=x.dtype, device=x.device)
    if len(generator) != x.shape[0]:
        raise ValueError(f"{len(generator)} generators for a batch of {x.shape[0]} samples; give one per sample")
    rows = [torch.randn(x.shape[1:], generator=g, dtype=x.dtype) for g in generator]
    return torch.stack(rows).to(x.device) if rows else torch.empty_like(x)


def to_d(x: Tensor, sigma: Tensor | float, denoised: Tensor) -> Tensor:
    """Probability-flow ODE derivative dx/dsigma = (x - D(x, sigma)) / sigma (Karras et al. 2022, eq. 3)."""
    return (x - denoised) / sigma


def check_sigmas(x: Tensor, sigmas: Tensor, name: str = "sigmas") -> Tensor:
    """Validate a decreasing, non-negative 1-D sigma grid and move it to x's device (float64 kept on CPU)."""
    if not torch.is_tensor(sigmas) or sigmas.ndim != 1 or len(sigmas) < 2:
        raise ValueError(f"{name} must be a 1-D tensor of at least 2 levels, got {getattr(sigmas, 'shape', sigmas)}")
    if not torch.isfinite(sigmas).all() or (sigmas < 0).any():
        raise ValueError(f"{name} must be finite and non-negative")
    if (sigmas[1:] >= sigmas[:-1]).any():
        raise ValueError(f"{name} must be strictly decreasing (from sigma_max down to sigma_min or 0)")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
    return sigmas.double()


def check_start(x: Any) -> Tensor:
    """x, the start of sampling: a finite floating-point tensor (batch, ...) with at least one row."""
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < 1 or x.shape[0] == 0:
        got = (f"{str(x.dtype).removeprefix('torch.')} tensor of shape {tuple(x.shape)}" if isinstance(x, Tensor)
               else type(x).__name__)
        raise ValueError(f"x must be a floating-point tensor (batch, ...) (batch first) with at least one row, "
                         f"got {got}")
    if not all_finite(x):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"x has NaN or infinite entries ({bad} of {x.numel()}); sampling starts from finite noise "
                         f"at sigma_max")
    return x


def check_count(name: str, value: Any, low: int = 1) -> int:
    """An integer argument >= low (a bool is refused: True would count as 1)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be >= {low} and an integer (not a bool), got {value!r}")
    return int(value)


def check_generators(generator: Any, batch: int) -> None:
    """None, one torch.Generator, or a sequence of exactly one per sample (checked here and not at the first draw,
    which a deterministic method never makes)."""
    if generator is None or isinstance(generator, torch.Generator):
        return
    if not isinstance(generator, Sequence) or not all(isinstance(g, torch.Generator) for g in generator):
        raise ValueError(f"generator must be a torch.Generator or a sequence of them (one per sample), "
                         f"got {type(generator).__name__}")
    if len(generator) != batch:
        raise ValueError(f"{len(generator)} generators for a batch of {batch} samples; give one per sample")


MAX_STEP_RATIO = 100.0  # sigma / sigma_next above which a sigma-space single-step solver steps first order (below)


def first_order(s: float, s_next: float, max_ratio: float) -> bool:
    """Whether the step s -> s_next is taken as DDIM's first-order step by Heun, RK4, DPM-Solver-2/3 and EDM's
    stochastic sampler: at sigma = 0, and where s / s_next > max_ratio. Their later stages evaluate D inside or at
    the end of the step and weigh it by the step's length over that stage's sigma (Heun: D at s_next, times
    (s / s_next - 1) / 2; DPM-Solver-2: D at sqrt(s s_next), about sqrt(s / s_next)), so a step across decades of
    sigma (a cosine DDPM table's top step, 20,291 -> 3.8) multiplies that D's error by up to thousands, where DDIM's
    lerp(D, x, s_next / s) keeps it below 1 (docs/samplers.md, "Long steps")."""
    return s_next == 0 or s > max_ratio * s_next


def report(callback: Callback | None, i: int, x: Tensor, sigma: float, sigma_next: float, denoised: Tensor) -> None:
    """Call the user's per-step callback, if any, with the step's state."""
    if callback is not None:
        callback({"i": i, "x": x, "sigma": sigma, "sigma_next": sigma_next, "denoised": denoised})


def ancestral_split(s: float, s_next: float, eta: float = 1.0) -> tuple[float, float]:
    """(sigma_down, sigma_up) of an ancestral step s -> s_next: sigma_up^2 = min(s'^2, eta^2 s'^2 (s^2 - s'^2) / s^2),
    sigma_down^2 = s'^2 - sigma_up^2 (DDIM's c of Song et al. 2021, eq. 16, in VE coordinates; eta = 1 is DDPM)."""
    if s_next == 0 or eta == 0:
        return s_next, 0.0
    up = min(s_next, eta * s_next * math.sqrt(max(s * s - s_next * s_next, 0.0)) / s)
    return math.sqrt(max(s_next * s_next - up * up, 0.0)), up


def exp_integrals(h: float, n: int) -> list[float]:
    """I_k = int_0^h exp(-(h - tau)) tau^k / k! dtau for k < n: the weights of the k-th lambda-derivative of D in
    the exact solution x' = (s'/s) x + sum_k I_k D^(k) of dx/dlambda = D - x, lambda = -log sigma (Lu et al. 2022b,
    eq. 9). By parts, I_0 = 1 - e^-h and I_k = h^k / k! - I_(k-1)."""
    out = [-math.expm1(-h)]
    for k in range(1, n):
        out.append(h**k / math.factorial(k) - out[-1])
    return out


def add_scaled(x: Tensor, coeffs: Sequence[float], tensors: Sequence[Tensor]) -> Tensor:
    """x + sum_k c_k t_k as a new tensor, one whole-tensor pass per nonzero term (the update of every multistep and
    Runge-Kutta step here)."""
    out = None
    for c, t in zip(coeffs, tensors):
        if c != 0.0:
            out = torch.add(x, t, alpha=c) if out is None else out.add_(t, alpha=c)
    return x.clone() if out is None else out
