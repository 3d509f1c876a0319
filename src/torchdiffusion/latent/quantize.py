"""Vector quantisation with an exponential-moving-average codebook (van den Oord et al. 2017, sec. 3.2 and
appendix A.1; Razavi et al. 2019, eqs. 3-5): nearest-code assignment, EMA updates of the code counts N_i and sums
m_i with Laplace smoothing, the commitment loss beta ||z_e - sg(e)||^2 and the straight-through gradient."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

Tensor = torch.Tensor
LAPLACE_EPS = 1e-5  # Laplace smoothing of the code counts (Sonnet's VectorQuantizerEMA epsilon)


@dataclass
class Quantized:
    """z_q with the straight-through gradient (B, D, H, W), code indices (B, H, W), the commitment loss (B,) (mean over
    the latent's elements), and the batch's code-usage statistics."""

    z_q: Tensor
    indices: Tensor
    commitment: Tensor
    perplexity: float  # exp(entropy of the batch's code frequencies): 1 (one code) ... K (all used equally)
    usage: float  # fraction of the K codes used in the batch


class VectorQuantizerEMA(nn.Module):
    """K codes of dimension D held as buffers (no gradient): in training mode each forward moves them by EMA."""

    def __init__(self, num_codes: int, dim: int, decay: float = 0.99, restart_below: float = 0.0):
        super().__init__()
        self.decay, self.restart_below = decay, restart_below
        codebook = torch.randn(num_codes, dim)
        self.register_buffer("codebook", codebook)  # e_i (K, D)
        self.register_buffer("cluster_size", torch.ones(num_codes))  # N_i (K,), so e_i = m_i / N_i from the start
        self.register_buffer("embed_sum", codebook.clone())  # m_i (K, D)

    def nearest(self, flat: Tensor) -> Tensor:
        """Index of the nearest code (squared Euclidean distance) for each row of flat (N, D) -> (N,)."""
        d = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.t() + self.codebook.pow(2).sum(1)[None])
        return d.argmin(1)

    def lookup(self, indices: Tensor) -> Tensor:
        """Codes of indices (B, H, W) as a latent (B, D, H, W)."""
        return self.codebook[indices].permute(0, 3, 1, 2).contiguous()

    def quantize(self, z: Tensor) -> Tensor:
        """The nearest codes of a latent (B, D, H, W), no statistics and no update."""
        B, D, H, W = z.shape
        return self.lookup(self.nearest(z.permute(0, 2, 3, 1).reshape(-1, D)).view(B, H, W))

    def forward(self, z_e: Tensor, beta: float = 0.25, generator: torch.Generator | None = None) -> Quantized:
        """Quantise z_e (B, D, H, W) with the current codes, then (training mode) update them by EMA."""
        B, D, H, W = z_e.shape
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, D)  # (N, D), N = B H W
        idx = self.nearest(flat.detach())
        e = self.codebook[idx]  # (N, D), before this step's update
        onehot = torch.nn.functional.one_hot(idx, self.codebook.shape[0]).to(flat.dtype)  # (N, K)
        counts = onehot.sum(0)  # n_i
        p = counts / counts.sum()
        perplexity = float(torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum()))
        if self.training:
            self.ema_update(counts, onehot.t() @ flat.detach(), flat.detach(), generator)
        commitment = beta * (flat - e.detach()).pow(2).reshape(B, -1).mean(1)
        z_q = flat + (e - flat).detach()  # straight-through: forward e, backward the identity to z_e
        return Quantized(z_q.reshape(B, H, W, D).permute(0, 3, 1, 2), idx.view(B, H, W), commitment, perplexity,
                         float((counts > 0).float().mean()))

    @torch.no_grad()
    def ema_update(self, counts: Tensor, sums: Tensor, flat: Tensor, generator: torch.Generator | None) -> None:
        """N_i <- g N_i + (1-g) n_i, m_i <- g m_i + (1-g) sum_j z_j [j -> i], e_i = m_i / N~_i with N~ the Laplace-
        smoothed counts (van den Oord et al. 2017, eqs. 6-8); codes whose N_i fell below restart_below restart at
        random encoder outputs of the batch (Dhariwal et al. 2020, Jukebox, sec. 3.2)."""
        g = self.decay
        self.cluster_size.mul_(g).add_(counts, alpha=1 - g)
        self.embed_sum.mul_(g).add_(sums, alpha=1 - g)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + LAPLACE_EPS) / (n + self.codebook.shape[0] * LAPLACE_EPS) * n
        self.codebook.copy_(self.embed_sum / smoothed[:, None])
        if self.restart_below > 0:
            dead = (self.cluster_size < self.restart_below).nonzero().flatten()
            if len(dead):
                pick = torch.randint(len(flat), (len(dead),), generator=generator).to(flat.device)
                self.codebook[dead] = flat[pick]
                self.embed_sum[dead] = flat[pick]
                self.cluster_size[dead] = 1.0
