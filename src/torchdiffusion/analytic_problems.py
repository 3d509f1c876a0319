"""Random Gaussian-mixture problems for held-out sampler benchmarks: one seed, one mixture with an exact denoiser.

A rule tuned on a handful of mixtures can fit their scales; the generator draws the things a grid rule is sensitive
to from wide ranges, so that rules are chosen on one set of seeds and reported on another (docs/samplers.md,
"Held-out protocol"): the dimension (2-64, log-uniform), the component count (2-32, log-uniform), component stds
spanning 1-3 decades, the spread of the means relative to the widest component, per-axis anisotropy within a
component, full (rotated) covariances for half of the problems, and the overall data scale (sigma_data 0.32-2, as for normalised images or latents).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .analytic import GaussianMixture, RotatedGaussianMixture

Tensor = torch.Tensor


@dataclass(frozen=True)
class MixtureProblem:
    """A drawn problem: the mixture (an exact denoiser) and the numbers it was drawn with."""

    seed: int
    mixture: GaussianMixture | RotatedGaussianMixture
    dim: int
    components: int
    decades: float  # log10 of the widest over the narrowest component std
    spread: float  # std of the means over the widest component std
    anisotropy: float  # largest per-axis std ratio within a component is about 10^(2 anisotropy)
    rotated: bool
    scale: float  # the widest component's std

    def describe(self) -> str:
        return (f"seed {self.seed}: d={self.dim}, K={self.components}, {self.decades:.1f} decades, spread "
                f"{self.spread:.2f}, anisotropy {self.anisotropy:.2f}, {'rotated' if self.rotated else 'diagonal'}, "
                f"sigma_data {self.mixture.sigma_data:.3g}")


def _log_uniform_int(g: torch.Generator, lo: int, hi: int) -> int:
    u = float(torch.rand((), generator=g, dtype=torch.float64))
    return min(hi, int(math.floor(math.exp(math.log(lo) + u * (math.log(hi + 1) - math.log(lo))))))


def _uniform(g: torch.Generator, lo: float, hi: float, *shape: int) -> Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64)


def random_rotations(k: int, d: int, generator: torch.Generator) -> Tensor:
    """k Haar-random orthogonal d x d matrices (QR of a Gaussian matrix with the signs of R's diagonal fixed)."""
    q, r = torch.linalg.qr(torch.randn(k, d, d, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r, dim1=1, dim2=2))[:, None, :]


def random_mixture(seed: int) -> MixtureProblem:
    """The mixture problem of one seed (deterministic: the same seed gives the same mixture on every machine)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    g = torch.Generator().manual_seed(seed)
    d, k = _log_uniform_int(g, 2, 64), _log_uniform_int(g, 2, 32)
    decades = float(_uniform(g, 1.0, 3.0))
    target = 10 ** float(_uniform(g, -0.5, 0.3))  # the data's overall std, sigma_data: 0.32-2
    spread = 10 ** float(_uniform(g, -0.3, 0.7))  # means ~ spread * scale * N(0, I)
    anisotropy = float(_uniform(g, 0.0, 0.5))
    rotated = bool(torch.rand((), generator=g) < 0.5)
    log_std = -decades * torch.rand(k, generator=g, dtype=torch.float64)  # component stds over 1 to 10^-decades
    log_std[torch.randint(k, (), generator=g)] = 0.0  # the range is spanned: one widest, one narrowest
    log_std[(log_std.argmin() if k > 2 else 1 - log_std.argmax())] = -decades
    axis = anisotropy * (2 * torch.rand(k, d, generator=g, dtype=torch.float64) - 1)  # per-axis log10 factors
    var = (10 ** (log_std[:, None] + axis)) ** 2
    means = spread * torch.randn(k, d, generator=g, dtype=torch.float64)
    weights = 0.2 + torch.rand(k, generator=g, dtype=torch.float64)
    # rescale to the drawn sigma_data (the trace of the covariance does not depend on the rotations)
    scale = target / GaussianMixture(weights, means, var).sigma_data
    var, means = var * scale**2, means * scale
    if rotated:
        mixture: GaussianMixture | RotatedGaussianMixture = RotatedGaussianMixture(
            weights, means, var, random_rotations(k, d, g))
    else:
        mixture = GaussianMixture(weights, means, var)
    return MixtureProblem(seed, mixture, d, k, decades, spread, anisotropy, rotated, scale)
