"""Noise-level embeddings: the sinusoidal features and the small MLP every backbone puts on top."""

from __future__ import annotations

import math

import torch
from torch import nn

Tensor = torch.Tensor


def timestep_embedding(noise_level: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal features [cos(n w_i), sin(n w_i)], w_i = max_period^(-i/half) (Vaswani et al. 2017, sec. 3.5).

    noise_level (B,) may be a step index, 1000 t or log(sigma) / 4; returns (B, dim) in float32
    (computed in float32 at least, since step indices near 1000 lose phase in half precision).
    An odd dim gets one trailing zero column. Ho et al. 2020 feed the DDPM step index through it.
    """
    if noise_level.ndim != 1:
        raise ValueError(f"noise_level must have shape (B,), got {tuple(noise_level.shape)}")
    half = dim // 2
    dtype = torch.promote_types(noise_level.dtype, torch.float32)
    freqs = torch.exp(-math.log(max_period) / half * torch.arange(half, dtype=dtype, device=noise_level.device))
    args = noise_level.to(dtype)[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = nn.functional.pad(emb, (0, 1))
    return emb.float()


class NoiseEmbedding(nn.Module):
    """sinusoidal(freq_dim) -> Linear -> SiLU -> Linear, the time MLP of Ho et al. 2020 (appendix B)."""

    def __init__(self, freq_dim: int, out_dim: int, max_period: float = 10000.0):
        super().__init__()
        self.freq_dim, self.max_period = freq_dim, max_period
        self.mlp = nn.Sequential(nn.Linear(freq_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, noise_level: Tensor) -> Tensor:
        """noise_level (B,) -> (B, out_dim) in the parameters' dtype."""
        emb = timestep_embedding(noise_level, self.freq_dim, self.max_period)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))
