"""Noise-conditional image classifier p(y | x_t, t): the ADM U-Net's encoder half (Dhariwal & Nichol 2021, sec. 4.1).

Residual blocks with the noise embedding by AdaGN, stride-2 downsampling, then group norm, SiLU, global
average pooling and a linear head to logits. Used by classifier guidance (grad_x log p(y | x_t)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import BackboneConfig
from .embeddings import NoiseEmbedding
from .unet import Downsample, ResBlock, group_norm

Tensor = torch.Tensor


@dataclass
class ClassifierConfig(BackboneConfig):
    """Configuration of `NoisyClassifier`; saved beside the weights."""

    in_channels: int = 1
    num_classes: int = 10
    base_channels: int = 32  # width of the first level; the noise embedding is 4x this
    channel_mult: tuple[int, ...] = (1, 2, 2)  # width multiplier per level; len - 1 downsamplings
    num_res_blocks: int = 1
    groups: int = 32
    dropout: float = 0.0
    image_size: int = 28  # for shape checks only

    def __post_init__(self) -> None:
        self.channel_mult = tuple(int(m) for m in self.channel_mult)
        if not self.channel_mult or min(self.channel_mult) < 1:
            raise ValueError(f"ClassifierConfig.channel_mult must be non-empty positive ints, got {self.channel_mult}")
        self.check_at_least(1, "in_channels", "base_channels", "groups", "image_size", "num_res_blocks")
        self.check_at_least(2, "num_classes")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ClassifierConfig.dropout must be in [0, 1), got {self.dropout}")


class NoisyClassifier(nn.Module):
    """forward(x_t (B, C, H, W), noise_level (B,)) -> logits (B, num_classes)."""

    config_class = ClassifierConfig

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = c = config
        ch0, emb_dim = c.base_channels, 4 * c.base_channels
        self.embed = NoiseEmbedding(ch0, emb_dim)
        self.conv_in = nn.Conv2d(c.in_channels, ch0, 3, padding=1)
        self.blocks = nn.ModuleList()
        ch = ch0
        for level, mult in enumerate(c.channel_mult):
            for _ in range(c.num_res_blocks):
                self.blocks.append(ResBlock(ch, mult * ch0, emb_dim, c.groups, c.dropout, 1.0))
                ch = mult * ch0
            if level < len(c.channel_mult) - 1:
                self.blocks.append(Downsample(ch))
        self.norm_out = group_norm(ch, c.groups)
        self.head = nn.Linear(ch, c.num_classes)
        nn.init.normal_(self.head.weight, std=1 / math.sqrt(ch) / 10)  # small logits at start: near-uniform p(y)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor, noise_level: Tensor) -> Tensor:
        """x (B, C, H, W) in process coordinates, noise_level (B,) -> logits (B, num_classes)."""
        c = self.config
        if x.ndim != 4 or x.shape[1] != c.in_channels:
            raise ValueError(f"NoisyClassifier expects x of shape (B, {c.in_channels}, H, W), got {tuple(x.shape)}")
        emb = F.silu(self.embed(noise_level))
        h = self.conv_in(x)
        for blk in self.blocks:
            h = blk(h, emb) if isinstance(blk, ResBlock) else blk(h)
        h = F.silu(self.norm_out(h)).mean(dim=(2, 3))  # global average pool: (B, ch)
        return self.head(h)
