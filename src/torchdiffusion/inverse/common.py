"""What the posterior samplers share: the measurement in spectral coordinates, DDIM's step in VE coordinates, and
the noise draws."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..sampling.common import noise_like
from .operators import SVD, Operator

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
              generator: torch.Generator | None) -> Tensor:
    """DDIM's step s -> s_next around the estimate x0 (Song, Meng & Ermon 2021, eq. 12 in VE coordinates, as
    `sampling.ddim`): x0 + sqrt(s'^2 - c^2) (x - x0) / s + c z, c^2 = eta^2 s'^2 (s^2 - s'^2) / s^2; eta = 1 is
    DDPM's ancestral step."""
    c2 = eta**2 * s_next**2 * (s**2 - s_next**2) / s**2
    out = torch.lerp(x0, x, max(s_next**2 - c2, 0.0) ** 0.5 / s)
    return out + c2**0.5 * noise_like(x, generator) if c2 > 0 else out


def check_eta(eta: float) -> None:
    if not 0 <= eta <= 1:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
