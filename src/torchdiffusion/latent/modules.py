"""The convolutional encoder and decoder of the latent-diffusion autoencoders (Rombach et al. 2022, appendix G;
Esser et al. 2021, sec. 3.1): residual blocks, stride-2 downsampling, nearest-neighbour upsampling to the exact size
each encoder level had, so any H, W works (28 -> 14 -> 7 and back)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.unet import group_norm

Tensor = torch.Tensor


def level_sizes(image_size: int, levels: int) -> list[int]:
    """Spatial size at each encoder level: a stride-2, padding-1, 3x3 conv maps s to ceil(s / 2)."""
    sizes = [image_size]
    for _ in range(levels - 1):
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


class ResBlock(nn.Module):
    """GN-SiLU-conv, GN-SiLU-conv, plus a (1x1 where widths differ) skip; no noise embedding."""

    def __init__(self, in_ch: int, out_ch: int, groups: int):
        super().__init__()
        self.norm1, self.conv1 = group_norm(in_ch, groups), nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2, self.conv2 = group_norm(out_ch, groups), nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_ch, H, W) -> (B, out_ch, H, W)."""
        h = self.conv1(F.silu(self.norm1(x)))
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


class Encoder(nn.Module):
    """x (B, C, H, W) -> (B, out_channels, H / 2^(L-1), W / 2^(L-1)) for L = len(channel_mult) levels."""

    def __init__(self, in_channels: int, base: int, channel_mult: tuple[int, ...], num_res_blocks: int,
                 out_channels: int, groups: int):
        super().__init__()
        widths = [base * m for m in channel_mult]
        self.conv_in = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        blocks: list[nn.Module] = []
        ch = widths[0]
        for i, w in enumerate(widths):
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(ch, w, groups))
                ch = w
            if i < len(widths) - 1:
                blocks.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        self.blocks = nn.Sequential(*blocks)
        self.mid = ResBlock(ch, ch, groups)
        self.norm_out = group_norm(ch, groups)
        self.conv_out = nn.Conv2d(ch, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.mid(self.blocks(self.conv_in(x)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Upsample(nn.Module):
    """Nearest-neighbour resize to an exact size, then a 3x3 conv."""

    def __init__(self, ch: int, size: int):
        super().__init__()
        self.size, self.conv = size, nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, size=(self.size, self.size), mode="nearest"))


class Decoder(nn.Module):
    """z (B, z_channels, h, w) -> (B, out_channels, image_size, image_size); `conv_out` is the last layer G_L whose
    gradients set the adversarial weight (Esser et al. 2021, eq. 7)."""

    def __init__(self, z_channels: int, base: int, channel_mult: tuple[int, ...], num_res_blocks: int,
                 out_channels: int, groups: int, image_size: int):
        super().__init__()
        widths = [base * m for m in channel_mult]
        sizes = level_sizes(image_size, len(widths))
        ch = widths[-1]
        self.conv_in = nn.Conv2d(z_channels, ch, 3, padding=1)
        self.mid = ResBlock(ch, ch, groups)
        blocks: list[nn.Module] = []
        for i in reversed(range(len(widths))):
            for _ in range(num_res_blocks + 1):
                blocks.append(ResBlock(ch, widths[i], groups))
                ch = widths[i]
            if i > 0:
                blocks.append(Upsample(ch, sizes[i - 1]))
        self.blocks = nn.Sequential(*blocks)
        self.norm_out = group_norm(ch, groups)
        self.conv_out = nn.Conv2d(ch, out_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.blocks(self.mid(self.conv_in(z)))
        return self.conv_out(F.silu(self.norm_out(h)))
