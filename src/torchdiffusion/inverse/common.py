"""What the posterior samplers share: the measurement in spectral coordinates, DDIM's step in VE coordinates, and
the noise draws."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..rng import rand, randn
from ..sampling.common import Generators, noise_like
from .operators import Operator
from .svd import SVD

Tensor = torch.Tensor


@dataclass(frozen=True)
class Spectral:
    """y seen in A's SVD basis: y_bar = S^+ U^T y (B, n) = V^T x0 + tau * n on the observed coordinates, where
    tau = noise_std / s (n,), +inf where s = 0 (Kawar et al. 2022, eq. 4)."""

    svd: SVD
    y_bar: Tensor
    tau: Tensor
    observed: Tensor


def spectral(operator: Operator, y: Tensor, shape: tuple[int, ...], noise_std: float) -> Spectral:
    """The measurement's spectral form for samples of `shape`, in y's dtype and device."""
    svd = operator.svd(shape)
    s = svd.s.to(y)
    obs = s > 0
    tau = torch.where(obs, noise_std / torch.where(obs, s, 1), torch.inf)
    return Spectral(svd, svd.y_bar(y), tau, obs)


def ddim_step(x: Tensor, x0: Tensor, s: float, s_next: float, eta: float,
              generator: Generators) -> Tensor:
    """DDIM's step s -> s_next around the estimate x0 (Song, Meng & Ermon 2021, eq. 12 in VE coordinates, as
    `sampling.ddim`): x0 + sqrt(s'^2 - c^2) (x - x0) / s + c z, c^2 = eta^2 s'^2 (s^2 - s'^2) / s^2; eta = 1 is
    DDPM's ancestral step."""
    c2 = eta**2 * s_next**2 * (s**2 - s_next**2) / s**2
    out = torch.lerp(x0, x, max(s_next**2 - c2, 0.0) ** 0.5 / s)
    return out + c2**0.5 * noise_like(x, generator) if c2 > 0 else out


def check_generators(generator: Generators, rows: int) -> None:
    """One torch.Generator, None, or one generator per row of y."""
    if generator is None or isinstance(generator, torch.Generator):
        return
    if len(generator) != rows or not all(isinstance(g, torch.Generator) for g in generator):
        raise ValueError(f"generator must be one torch.Generator or one per row of y ({rows}), got "
                         f"{len(generator)} item(s)")


def row_noise(x: Tensor, generator: Generators, group: int = 1) -> Tensor:
    """N(0, I) of x's shape; with one generator per row of y, row b's `group` consecutive rows of x (its particles)
    are drawn from generator b, so each row's draws do not depend on the batch it is solved in."""
    if generator is None or isinstance(generator, torch.Generator):
        return noise_like(x, generator)
    if len(generator) * group != len(x):
        raise ValueError(f"{len(generator)} generators for {len(x)} rows in groups of {group}")
    parts = [randn((group, *x.shape[1:]), g, dtype=x.dtype, device=x.device) for g in generator]
    return torch.cat(parts) if parts else torch.empty_like(x)


def row_uniform(rows: int, generator: Generators, like: Tensor) -> Tensor:
    """(rows,) uniforms on [0, 1) in like's dtype and device, row b's from generator b when there is one per row."""
    if generator is None or isinstance(generator, torch.Generator):
        return rand((rows,), generator, dtype=like.dtype, device=like.device)
    return torch.cat([rand((1,), g, dtype=like.dtype, device=like.device) for g in generator])


def check_eta(eta: float) -> None:
    if not 0 <= eta <= 1:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
