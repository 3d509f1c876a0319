"""A residual MLP backbone for vector data (B, dim): toy 2-D densities, low-dimensional mixtures."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..checks import check_backbone_input

from .config import BackboneConfig
from .embeddings import NoiseEmbedding

Tensor = torch.Tensor


@dataclass
class MLPConfig(BackboneConfig):
    """Configuration of `MLP`; saved beside the weights."""

    dim: int = 2  # data dimension
    hidden: int = 256  # width of every residual block
    depth: int = 4  # number of residual blocks
    emb_dim: int = 128  # sinusoidal feature size of the noise level
    out_mult: int = 1  # output is (B, dim * out_mult); 2 for a learned-variance head
    num_classes: int = 0  # > 0 adds a label embedding; label == num_classes is the null label

    def __post_init__(self) -> None:
        self.check_at_least(1, "dim", "hidden", "depth", "emb_dim", "out_mult")
        self.check_at_least(0, "num_classes")

    @property
    def data_shape(self) -> tuple[int, ...]:
        """Per-sample shape of the data: (dim,)."""
        return (int(self.dim),)


class ResidualMLPBlock(nn.Module):
    """h + Linear(SiLU(Linear(LN(h) * (1 + scale) + shift))), scale/shift from the noise embedding (AdaLN)."""

    def __init__(self, hidden: int):
        super().__init__()
        # no affine in the norm: the embedding projection's bias already supplies a per-feature scale and shift
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.emb_proj = nn.Linear(hidden, 2 * hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.act = nn.SiLU()

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        """h (B, hidden), emb (B, hidden) already passed through SiLU -> (B, hidden)."""
        scale, shift = self.emb_proj(emb).chunk(2, dim=1)
        y = self.norm(h) * (1 + scale) + shift
        return h + self.fc2(self.act(self.fc1(y)))


class MLP(nn.Module):
    """Noise-conditioned residual MLP: (x (B, dim), noise_level (B,), class_labels=None) -> (B, dim * out_mult)."""

    config_class = MLPConfig

    def __init__(self, config: MLPConfig):
        super().__init__()
        self.config = config
        c = config
        self.embed = NoiseEmbedding(c.emb_dim, c.hidden)
        # one extra row: label == num_classes is the null ("unconditional") label for classifier-free guidance
        self.label_embed = nn.Embedding(c.num_classes + 1, c.hidden) if c.num_classes > 0 else None
        self.inp = nn.Linear(c.dim, c.hidden)
        self.blocks = nn.ModuleList(ResidualMLPBlock(c.hidden) for _ in range(c.depth))
        self.out_norm = nn.LayerNorm(c.hidden)
        self.out = nn.Linear(c.hidden, c.dim * c.out_mult)
        # zero-initialised head: the untrained model predicts 0 (Ho et al. 2020 do the same for the U-Net)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, noise_level: Tensor, class_labels: Tensor | None = None) -> Tensor:
        """x (B, dim), noise_level (B,), class_labels (B,) long or None (= null label) -> (B, dim * out_mult)."""
        check_backbone_input("MLP", x, "(B, dim)", 2, self.config.dim, class_labels, self.config.num_classes)
        emb = self.embed(noise_level)  # (B, hidden)
        if self.label_embed is not None:
            if class_labels is None:
                class_labels = torch.full_like(noise_level, self.config.num_classes, dtype=torch.long)
            emb = emb + self.label_embed(class_labels)
        elif class_labels is not None:
            raise ValueError("class_labels given but MLPConfig.num_classes == 0")
        emb = nn.functional.silu(emb)  # shared by every block's scale/shift projection
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(nn.functional.silu(self.out_norm(h)))
