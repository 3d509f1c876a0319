"""The image U-Net of Ho et al. 2020 with the refinements of Dhariwal & Nichol 2021 ("ADM").

Residual blocks take the noise embedding by adaptive group norm, self-attention runs at chosen
resolutions, class labels add to the noise embedding, and text-like context enters attention by
appending its keys and values to the image tokens' (GLIDE, Nichol et al. 2022, sec. 2.3 / appendix).
A super-resolution model (SR3, Saharia et al. 2021, sec. 2.4) takes a low-resolution image, resized to x's size
and concatenated to x as extra input channels, with the level of the Gaussian noise it was corrupted by embedded
like the noise level (noise conditioning augmentation, Ho et al. 2021, "Cascaded Diffusion Models", sec. 3.2).
Any H, W works: downsampling is a stride-2 conv (28 -> 14 -> 7 -> 4) and each upsample targets the
exact size of the skip it meets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_backbone_input
from .attention import dot_product_attention
from .config import BackboneConfig
from .embeddings import NoiseEmbedding

Tensor = torch.Tensor
LOW_RES_UPSAMPLING = ("nearest", "bilinear", "bicubic")
# aug_level (a noise std, about 0 to 1 on data in [-1, 1]) times this spans the sinusoids' range as DDPM's step does
AUG_LEVEL_SCALE = 1000.0


@dataclass
class UNetConfig(BackboneConfig):
    """Configuration of `UNet`; saved beside the weights."""

    in_channels: int = 1
    out_channels: int | None = None  # None: same as in_channels (before the learned-variance doubling)
    base_channels: int = 64  # width of the first level; the noise embedding is 4x this
    channel_mult: tuple[int, ...] = (1, 2, 2)  # width multiplier per level; len - 1 downsamplings
    num_res_blocks: int = 2  # residual blocks per level on the way down (one more on the way up)
    attn_resolutions: tuple[int, ...] = ()  # spatial sizes (for image_size) that get self-attention
    num_heads: int = 4
    dropout: float = 0.0
    groups: int = 32  # GroupNorm groups, reduced to the largest divisor of each channel count
    scale_skip: bool = False  # multiply residual sums by 1/sqrt(2) (NCSN++ / EDM)
    # True: each upsampling conv already outputs the finer level's width, so it runs at the fine resolution with
    # fewer output channels and the blocks after it see narrower inputs (fewer FLOPs where pixels are many)
    narrow_upsample: bool = False
    learned_variance: bool = False  # doubled output: prediction, then v of Nichol & Dhariwal 2021 eq. 15
    num_classes: int = 0  # > 0: label embedding added to the noise embedding; label == num_classes is null
    context_dim: int = 0  # > 0: attention blocks also attend to context (B, L, context_dim)
    image_size: int = 32  # places attention at attn_resolutions; the size low_res is resized to
    # > 0: SR3 - the model takes low_res (B, in_channels, low_res_size, low_res_size) and aug_level (B,), the std
    # of the Gaussian noise low_res was corrupted by; image_size must be a multiple of low_res_size
    low_res_size: int = 0
    low_res_upsample: str = "bicubic"  # nearest | bilinear | bicubic: how low_res is resized to image_size

    def __post_init__(self) -> None:
        # JSON round trips turn tuples into lists
        self.channel_mult = tuple(int(m) for m in self.channel_mult)
        self.attn_resolutions = tuple(int(r) for r in self.attn_resolutions)
        if not self.channel_mult or min(self.channel_mult) < 1:
            raise ValueError(f"UNetConfig.channel_mult must be non-empty positive ints, got {self.channel_mult}")
        self.check_at_least(1, "in_channels", "base_channels", "num_heads", "groups", "image_size")
        self.check_at_least(1, "out_channels", optional=True)
        self.check_at_least(0, "num_res_blocks", "num_classes", "context_dim", "low_res_size")
        if self.low_res_size and (self.low_res_size > self.image_size or self.image_size % self.low_res_size):
            raise ValueError(f"UNetConfig.low_res_size ({self.low_res_size}) must divide image_size "
                             f"({self.image_size}): the super-resolution factor is image_size / low_res_size")
        if self.low_res_upsample not in LOW_RES_UPSAMPLING:
            raise ValueError(f"UNetConfig.low_res_upsample must be one of {', '.join(LOW_RES_UPSAMPLING)}, "
                             f"got {self.low_res_upsample!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"UNetConfig.dropout must be in [0, 1), got {self.dropout}")
        for m in set(self.channel_mult):
            if (m * self.base_channels) % self.num_heads:
                raise ValueError(f"num_heads={self.num_heads} must divide every level width; "
                                 f"{m * self.base_channels} is not divisible")

    @property
    def total_out_channels(self) -> int:
        """Channels of the network output, doubled for a learned-variance head."""
        out = self.in_channels if self.out_channels is None else self.out_channels
        return 2 * out if self.learned_variance else out


def group_norm(channels: int, groups: int, affine: bool = True) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= groups that divides channels."""
    g = max(d for d in range(1, min(groups, channels) + 1) if channels % d == 0)
    return nn.GroupNorm(g, channels, affine=affine)


def zero_(module: nn.Module) -> nn.Module:
    """Zero a layer's parameters so its block starts as the identity (Ho et al. 2020; Goyal et al. 2017)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """GN-SiLU-conv, AdaGN(emb)-SiLU-dropout-conv(zero), plus a skip (Dhariwal & Nichol 2021, sec. 3)."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int, dropout: float, skip_scale: float):
        super().__init__()
        self.norm1 = group_norm(in_ch, groups)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, 2 * out_ch)  # -> (scale, shift)
        # no affine: norm2(h) * (1 + scale) + shift already has a learned per-channel scale/shift (emb_proj bias)
        self.norm2 = group_norm(out_ch, groups, affine=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = zero_(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.skip_scale = skip_scale

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """x (B, in_ch, H, W), emb (B, emb_dim) already through SiLU -> (B, out_ch, H, W)."""
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb_proj(emb)[:, :, None, None].chunk(2, dim=1)  # (B, out_ch, 1, 1) each
        h = torch.addcmul(shift, self.norm2(h), 1 + scale)  # AdaGN: norm(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        out = self.skip(x) + h
        return out * self.skip_scale if self.skip_scale != 1.0 else out


class Attention(nn.Module):
    """Multi-head self-attention over the H*W tokens, with optional context tokens appended to keys/values (GLIDE)."""

    def __init__(self, ch: int, num_heads: int, groups: int, context_dim: int, skip_scale: float):
        super().__init__()
        self.num_heads, self.skip_scale = num_heads, skip_scale
        self.norm = group_norm(ch, groups)
        self.qkv = nn.Linear(ch, 3 * ch)
        self.context_kv = nn.Linear(context_dim, 2 * ch) if context_dim > 0 else None
        self.proj = zero_(nn.Linear(ch, ch))

    def forward(self, x: Tensor, context: Tensor | None = None, context_mask: Tensor | None = None) -> Tensor:
        """x (B, C, H, W), context (B, L, context_dim), context_mask (B, L) bool, True = keep -> (B, C, H, W)."""
        B, C, H, W = x.shape
        nh, N = self.num_heads, H * W
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, N, C), a view
        q, k, v = self.qkv(tokens).view(B, N, 3, nh, C // nh).permute(2, 0, 3, 1, 4)  # each (B, nh, N, d)
        mask = None
        if context is not None and self.context_kv is not None:
            L = context.shape[1]
            kc, vc = self.context_kv(context).view(B, L, 2, nh, C // nh).permute(2, 0, 3, 1, 4)  # (B, nh, L, d)
            k, v = torch.cat([k, kc], dim=2), torch.cat([v, vc], dim=2)
            if context_mask is not None:
                # image tokens are always visible, so a fully masked context never leaves a row without keys
                keep_img = torch.ones(B, N, dtype=torch.bool, device=x.device)
                mask = torch.cat([keep_img, context_mask.to(torch.bool)], dim=1)[:, None, None, :]  # (B, 1, 1, N+L)
        a = dot_product_attention(q, k, v, mask)  # (B, nh, N, d)
        a = self.proj(a.transpose(1, 2).reshape(B, N, C))  # (B, N, C)
        out = x + a.transpose(1, 2).reshape(B, C, H, W)
        return out * self.skip_scale if self.skip_scale != 1.0 else out


class Block(nn.Module):
    """One U-Net stage: a ResBlock, then Attention when this resolution has it."""

    def __init__(self, res: ResBlock, attn: Attention | None):
        super().__init__()
        self.res, self.attn = res, attn

    def forward(self, h: Tensor, emb: Tensor, context: Tensor | None, context_mask: Tensor | None) -> Tensor:
        """h (B, in_ch, H, W) -> (B, out_ch, H, W)."""
        h = self.res(h, emb)
        return self.attn(h, context, context_mask) if self.attn is not None else h


class Downsample(nn.Module):
    """Stride-2 3x3 conv, padding 1: H -> ceil(H / 2), so 28 -> 14 -> 7 -> 4."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, C, H, W) -> (B, C, ceil(H / 2), ceil(W / 2))."""
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour resize to the skip's exact size, then a 3x3 conv (Ho et al. 2020) from ch to out_ch."""

    def __init__(self, ch: int, out_ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, out_ch, 3, padding=1)

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        """x (B, C, h, w) -> (B, out_ch, *size)."""
        return self.conv(F.interpolate(x, size=size, mode="nearest"))


class UNet(nn.Module):
    """forward(x (B,C,H,W), noise_level (B,), class_labels=None, context=None, context_mask=None) -> (B, out, H, W)."""

    config_class = UNetConfig

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = c = config
        ch0, emb_dim = c.base_channels, 4 * c.base_channels
        skip_scale = 1 / math.sqrt(2) if c.scale_skip else 1.0
        self.embed = NoiseEmbedding(ch0, emb_dim)
        # one extra row: label == num_classes is the null label (classifier-free guidance, Ho & Salimans 2022)
        self.label_embed = nn.Embedding(c.num_classes + 1, emb_dim) if c.num_classes > 0 else None
        # one norm on the context, shared by every attention block's key/value projection
        self.context_norm = nn.LayerNorm(c.context_dim) if c.context_dim > 0 else None

        def block(cin: int, cout: int, res: int) -> Block:
            attn = None
            if res in c.attn_resolutions:
                attn = Attention(cout, c.num_heads, c.groups, c.context_dim, skip_scale)
            return Block(ResBlock(cin, cout, emb_dim, c.groups, c.dropout, skip_scale), attn)

        # SR3: the resized low_res rides along x as in_channels more input channels
        self.aug_embed = NoiseEmbedding(ch0, emb_dim) if c.low_res_size else None
        self.conv_in = nn.Conv2d(c.in_channels * (2 if c.low_res_size else 1), ch0, 3, padding=1)
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        skip_chs, ch, res = [ch0], ch0, c.image_size
        level_res = []  # nominal spatial size of each level: image_size, ceil(/2), ...
        for level, mult in enumerate(c.channel_mult):
            level_res.append(res)
            blocks = nn.ModuleList()
            for _ in range(c.num_res_blocks):
                blocks.append(block(ch, mult * ch0, res))
                ch = mult * ch0
                skip_chs.append(ch)
            self.down.append(blocks)
            if level < len(c.channel_mult) - 1:
                self.downsample.append(Downsample(ch))
                skip_chs.append(ch)
                res = (res + 1) // 2

        self.mid_res1 = ResBlock(ch, ch, emb_dim, c.groups, c.dropout, skip_scale)
        self.mid_attn = Attention(ch, c.num_heads, c.groups, c.context_dim, skip_scale)
        self.mid_res2 = ResBlock(ch, ch, emb_dim, c.groups, c.dropout, skip_scale)

        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for level, mult in reversed(list(enumerate(c.channel_mult))):
            blocks = nn.ModuleList()
            for _ in range(c.num_res_blocks + 1):  # one extra block eats the downsampler's skip
                blocks.append(block(ch + skip_chs.pop(), mult * ch0, level_res[level]))
                ch = mult * ch0
            self.up.append(blocks)
            if level > 0:  # target size comes from the skip at run time
                out = c.channel_mult[level - 1] * ch0 if c.narrow_upsample else ch
                self.upsample.append(Upsample(ch, out))
                ch = out

        self.norm_out = group_norm(ch, c.groups)
        self.conv_out = zero_(nn.Conv2d(ch, c.total_out_channels, 3, padding=1))

    def forward(self, x: Tensor, noise_level: Tensor, class_labels: Tensor | None = None,
                context: Tensor | None = None, context_mask: Tensor | None = None, low_res: Tensor | None = None,
                aug_level: Tensor | None = None) -> Tensor:
        """x (B, C, H, W), noise_level (B,), class_labels (B,) long, context (B, L, D), context_mask (B, L) bool,
        low_res (B, C, low_res_size, low_res_size), aug_level (B,) (None: 0)."""
        emb, context = self.embedding(x, noise_level, class_labels, context, context_mask, low_res, aug_level)
        h, skips = self.encode(self.with_low_res(x, low_res), emb, context, context_mask)
        h = self.middle(h, emb, context, context_mask)
        return self.decode(h, skips, emb, context, context_mask)

    # The forward pass in four parts, so that ControlNet (Zhang et al. 2023) can add residuals to the skips and the
    # middle, and step caching (DeepCache, Ma et al. 2023) can rerun only the shallowest level.

    def embedding(self, x: Tensor, noise_level: Tensor, class_labels: Tensor | None = None,
                  context: Tensor | None = None, context_mask: Tensor | None = None, low_res: Tensor | None = None,
                  aug_level: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """(SiLU(noise + augmentation level + label embedding) (B, 4 * base_channels), the normed context or None),
        inputs checked."""
        c = self.config
        check_backbone_input("UNet", x, "(B, C, H, W)", 4, c.in_channels, class_labels, c.num_classes)
        emb = self.embed(noise_level)  # (B, 4 * base_channels)
        if self.aug_embed is not None:  # SR3 with noise-conditioning augmentation (Ho et al. 2021, sec. 4.1)
            level = torch.zeros(x.shape[0], device=x.device) if aug_level is None else aug_level
            if level.shape != (x.shape[0],):
                raise ValueError(f"aug_level must have shape ({x.shape[0]},), got {tuple(level.shape)}")
            emb = emb + self.aug_embed(AUG_LEVEL_SCALE * level)
        elif low_res is not None or aug_level is not None:
            raise ValueError("low_res / aug_level given but UNetConfig.low_res_size == 0 (not a super-resolution "
                             "model)")
        if self.label_embed is not None:
            if class_labels is None:  # no labels: the null label, i.e. the unconditional model
                class_labels = torch.full((x.shape[0],), c.num_classes, dtype=torch.long, device=x.device)
            emb = emb + self.label_embed(class_labels)
        elif class_labels is not None:
            raise ValueError("class_labels given but UNetConfig.num_classes == 0")
        if context is not None:
            if self.context_norm is None:
                raise ValueError("context given but UNetConfig.context_dim == 0")
            context = self.context_norm(context)
        elif context_mask is not None:
            raise ValueError("context_mask given without context")
        return F.silu(emb), context  # every ResBlock applies SiLU before its projection; do it once here

    def encode(self, x: Tensor, emb: Tensor, context: Tensor | None, context_mask: Tensor | None,
               levels: int | None = None, hint: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        """(h at the bottom, the skips in order): conv_in, then `levels` down levels (None: all, with their
        downsamplers). hint (B, base_channels, H, W) is added to conv_in's output (ControlNet's condition)."""
        h = self.conv_in(x)
        if hint is not None:
            h = h + hint
        skips = [h]
        for level, blocks in enumerate(self.down[:levels]):
            for blk in blocks:
                h = blk(h, emb, context, context_mask)
                skips.append(h)
            if levels is None and level < len(self.downsample):
                h = self.downsample[level](h)
                skips.append(h)
        return h, skips

    def middle(self, h: Tensor, emb: Tensor, context: Tensor | None, context_mask: Tensor | None) -> Tensor:
        """The middle ResBlock-Attention-ResBlock at the lowest resolution."""
        return self.mid_res2(self.mid_attn(self.mid_res1(h, emb), context, context_mask), emb)

    def decode(self, h: Tensor, skips: list[Tensor], emb: Tensor, context: Tensor | None,
               context_mask: Tensor | None, start: int = 0, stop: int | None = None) -> Tensor:
        """Up levels start..stop-1 (stop None: all, then the output head), each eating its skips from the end of
        `skips` (popped); stop < number of levels returns h upsampled to the next level's size."""
        levels = len(self.up) if stop is None else stop
        for i in range(start, levels):
            for blk in self.up[i]:
                h = blk(torch.cat([h, skips.pop()], dim=1), emb, context, context_mask)
            if i < len(self.upsample):
                h = self.upsample[i](h, skips[-1].shape[-2:])  # match the skip exactly (7 -> 14, 4 -> 7)
        if stop is not None:
            return h
        return self.conv_out(F.silu(self.norm_out(h)))

    def with_low_res(self, x: Tensor, low_res: Tensor | None) -> Tensor:
        """x with the upsampled low-resolution image as extra channels (B, 2C, H, W) for an SR model, else x."""
        return torch.cat([x, self.upsampled(x, low_res)], dim=1) if self.aug_embed is not None else x

    def upsampled(self, x: Tensor, low_res: Tensor | None) -> Tensor:
        """low_res (B, C, s, s) resized to x's (H, W) by config.low_res_upsample, in x's dtype (SR3's input)."""
        c = self.config
        want = (x.shape[0], c.in_channels, c.low_res_size, c.low_res_size)
        if low_res is None:
            raise ValueError(f"this is a super-resolution model (SR3): it needs low_res, a {c.low_res_size}x"
                             f"{c.low_res_size} image per sample (e.g. `torchdiffusion cascade` or "
                             f"torchdiffusion.inverse.superres.upscale)")
        if tuple(low_res.shape) != want:
            raise ValueError(f"low_res must have shape {want}, got {tuple(low_res.shape)}")
        align = {} if c.low_res_upsample == "nearest" else {"align_corners": False}
        return F.interpolate(low_res.to(x.dtype), size=x.shape[-2:], mode=c.low_res_upsample, **align)
