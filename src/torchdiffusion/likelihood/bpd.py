"""Nats of scaled continuous data to bits/dim of the discrete data, and uniform dequantization.

Data convention: 8-bit pixels k in {0..255}; the models see x = k / 127.5 - 1 (see vlb.py). Uniform dequantization
draws u ~ U[0, 1)^d and maps x' = data_range (k + u) / bins - data_range / 2, so a density on x' is one on u = k + u
times the Jacobian (data_range / bins)^d, and E_u[log p_u(k + u)] <= log P(k) (Theis et al. 2016, sec. 3.1).
"""

from __future__ import annotations

import math

import torch

from ..rng import rand

Tensor = torch.Tensor
DEQUANTIZATIONS = ("uniform", "none")


def bits_per_dim(logp_nats: Tensor, dims: int, *, dequantization: str = "uniform", bins: int = 256,
                 data_range: float = 2.0) -> Tensor:
    """-log2 p / dims. "uniform": logp is a density of x' (above) and log p_u = log p_x' + dims log(data_range / bins)
    (for [-1, 1] and 256 bins: bpd = -logp / (dims ln 2) + 7). "none": logp is used as is (a density of continuous
    data in its own units, or already a log-probability of the discrete data, e.g. from a discretized decoder)."""
    if dequantization not in DEQUANTIZATIONS:
        raise ValueError(f"dequantization must be one of {DEQUANTIZATIONS}, got {dequantization!r}")
    logp = logp_nats.double()
    if dequantization == "uniform":
        logp = logp + dims * math.log(data_range / bins)
    return -logp / (dims * math.log(2))


def uniform_dequantize(x: Tensor, *, bins: int = 256, generator: torch.Generator | None = None) -> Tensor:
    """x on the lattice k / ((bins - 1) / 2) - 1 to x' = 2 (k + u) / bins - 1 in [-1, 1), u ~ U[0, 1)
    (Theis et al. 2016, sec. 3.1)."""
    k = torch.round((x.double() + 1) * (bins - 1) / 2).clamp(0, bins - 1)
    u = rand(x.shape, generator, dtype=torch.float64, device=x.device)
    return (2 * (k + u) / bins - 1).to(x.dtype)
