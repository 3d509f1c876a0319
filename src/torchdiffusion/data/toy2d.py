"""2-D toy distributions, centred and scaled so E||x||^2 = 2 (sigma_data = 1 per coordinate).

Each sampler is `sample_<name>(n, generator=None) -> (n, 2) float32`, drawing only from torch's RNG
with `generator`, so a seeded generator gives the same points on every run. One scalar scale is used
for both axes, so shapes are not stretched; per-axis stds are 1 except for the moons (about 1.2, 0.7).
"""

from __future__ import annotations

import math
from functools import lru_cache, partial
from typing import Callable

import torch

Tensor = torch.Tensor

SWISS_ROLL_NOISE = 0.5  # isotropic noise std in the raw (t cos t, t sin t) coordinates
MOONS_NOISE = 0.1  # as sklearn's make_moons(noise=0.1), in its raw coordinates
EIGHT_GAUSSIANS_STD_RATIO = 0.1  # component std / circle radius
CHECKERBOARD_CELLS = 4  # board of CHECKERBOARD_CELLS^2 squares, half of them filled


def _t_swiss(u: Tensor) -> Tensor:
    """Roll angle t = 1.5 pi (1 + 2u) in [1.5 pi, 4.5 pi], as in sklearn's make_swiss_roll."""
    return 1.5 * math.pi * (1 + 2 * u)


@lru_cache(maxsize=None)
def _swiss_roll_moments() -> tuple[tuple[float, float], float]:
    """Mean and pooled std of the raw noisy roll, by the midpoint rule over u in [0, 1] (error ~1e-10)."""
    u = (torch.arange(200_000, dtype=torch.float64) + 0.5) / 200_000
    t = _t_swiss(u)
    p = torch.stack([t * torch.cos(t), t * torch.sin(t)], 1)
    mean = p.mean(0)
    var = ((p - mean) ** 2).mean() + SWISS_ROLL_NOISE**2
    return (float(mean[0]), float(mean[1])), math.sqrt(float(var))


def sample_swiss_roll(n: int, generator: torch.Generator | None = None) -> Tensor:
    """Points on the spiral (t cos t, t sin t), t ~ U[1.5 pi, 4.5 pi], plus Gaussian noise; standardised."""
    t = _t_swiss(torch.rand(n, generator=generator, dtype=torch.float64))
    p = torch.stack([t * torch.cos(t), t * torch.sin(t)], 1)
    p = p + SWISS_ROLL_NOISE * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    mean, std = _swiss_roll_moments()
    return ((p - torch.tensor(mean, dtype=torch.float64)) / std).float()


def sample_moons(n: int, generator: torch.Generator | None = None) -> Tensor:
    """sklearn's two moons: upper (cos th, sin th), lower (1 - cos th, 1/2 - sin th), th ~ U[0, pi], + noise.

    Moments in closed form: mean (1/2, 1/4), Var x = 3/4, Var y = 9/16 - 1/pi, each + noise^2.
    """
    theta = math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
    lower = torch.rand(n, generator=generator) < 0.5
    x = torch.where(lower, 1 - torch.cos(theta), torch.cos(theta))
    y = torch.where(lower, 0.5 - torch.sin(theta), torch.sin(theta))
    p = torch.stack([x, y], 1) + MOONS_NOISE * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    var = (0.75 + (9 / 16 - 1 / math.pi)) / 2 + MOONS_NOISE**2
    return ((p - torch.tensor([0.5, 0.25], dtype=torch.float64)) / math.sqrt(var)).float()


def eight_gaussians_params() -> tuple[Tensor, float]:
    """Means (8, 2) on a circle of radius R and the shared isotropic std s, with R^2/2 + s^2 = 1."""
    radius = 1 / math.sqrt(0.5 + EIGHT_GAUSSIANS_STD_RATIO**2)
    angle = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    return radius * torch.stack([torch.cos(angle), torch.sin(angle)], 1), EIGHT_GAUSSIANS_STD_RATIO * radius


def sample_eight_gaussians(n: int, generator: torch.Generator | None = None) -> Tensor:
    """Equal mixture of 8 isotropic Gaussians on a circle (Grathwohl et al. 2019's toy), exactly unit variance."""
    means, std = eight_gaussians_params()
    k = torch.randint(0, 8, (n,), generator=generator)
    return (means[k] + std * torch.randn(n, 2, generator=generator, dtype=torch.float64)).float()


def sample_checkerboard(n: int, generator: torch.Generator | None = None) -> Tensor:
    """Uniform on the dark squares of a 4x4 board over [-sqrt 3, sqrt 3]^2; each marginal is U[-sqrt 3, sqrt 3]."""
    k = CHECKERBOARD_CELLS
    col = torch.randint(0, k, (n,), generator=generator)
    # k // 2 rows share each parity; pick one of them, matching (row + col) even.
    row = 2 * torch.randint(0, k // 2, (n,), generator=generator) + col % 2
    cell = torch.stack([col, row], 1).double()
    u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
    half = math.sqrt(3.0)
    return ((cell + u) * (2 * half / k) - half).float()


TOY2D: dict[str, Callable[..., Tensor]] = {
    "swiss_roll": sample_swiss_roll,
    "moons": sample_moons,
    "eight_gaussians": sample_eight_gaussians,
    "checkerboard": sample_checkerboard,
}


def load_toy(name: str, n: int = 20000, seed: int = 0) -> tuple[Tensor, Tensor]:
    """(data, labels) of a toy dataset: n points of TOY2D[name] from a generator seeded with `seed`, all labelled 0."""
    generator = torch.Generator().manual_seed(seed)
    return TOY2D[name](n, generator=generator), torch.zeros(n, dtype=torch.int64)


# the registered loaders (torchdiffusion.registry.DATASETS, as "toy:<name>")
load_swiss_roll = partial(load_toy, "swiss_roll")
load_moons = partial(load_toy, "moons")
load_eight_gaussians = partial(load_toy, "eight_gaussians")
load_checkerboard = partial(load_toy, "checkerboard")
