"""The Diffusion Transformer of Peebles & Xie 2023 ("Scalable Diffusion Models with Transformers"), DiT.

The image is cut into p x p patches (a stride-p conv), each patch becomes a token with a fixed 2-D
sin-cos position, and a stack of transformer blocks conditioned by adaLN-Zero (sec. 3.2) maps the
tokens to per-patch outputs that are folded back into an image. The noise-level embedding plus the
class embedding is the conditioning vector c; text-like context enters through a cross-attention
sublayer per block (the paper's "cross-attention block", with keys and values from the context).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_backbone_input
from .attention import dot_product_attention
from .config import BackboneConfig
from .embeddings import NoiseEmbedding

Tensor = torch.Tensor

FREQ_DIM = 256  # sinusoidal features of the noise level before its MLP (Peebles & Xie 2023, appendix)


@dataclass
class DiTConfig(BackboneConfig):
    """Configuration of `DiT`; saved beside the weights. DiT-S/2 is hidden_dim=384, depth=12, num_heads=6, patch 2."""

    in_channels: int = 1
    out_channels: int | None = None  # None: same as in_channels (before the learned-variance doubling)
    image_size: int = 32  # H = W; the positional embedding is built for this size
    patch_size: int = 2  # p: each p x p patch is one token, so (image_size / p)^2 tokens
    hidden_dim: int = 384  # token width d; a multiple of 4 for the 2-D sin-cos position
    depth: int = 12  # number of transformer blocks
    num_heads: int = 6
    mlp_ratio: float = 4.0  # MLP hidden width = mlp_ratio * hidden_dim
    learned_variance: bool = False  # doubled output: prediction, then v of Nichol & Dhariwal 2021 eq. 15
    num_classes: int = 0  # > 0: label embedding added to the noise embedding; label == num_classes is null
    context_dim: int = 0  # > 0: every block cross-attends to context (B, L, context_dim)

    def __post_init__(self) -> None:
        self.check_at_least(1, "in_channels", "image_size", "patch_size", "hidden_dim", "depth", "num_heads")
        self.check_at_least(1, "out_channels", optional=True)
        self.check_at_least(0, "num_classes", "context_dim")
        if not self.mlp_ratio > 0:
            raise ValueError(f"DiTConfig.mlp_ratio must be > 0, got {self.mlp_ratio}")
        if self.image_size % self.patch_size:
            raise ValueError(f"DiTConfig.patch_size={self.patch_size} must divide image_size={self.image_size}")
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"DiTConfig.num_heads={self.num_heads} must divide hidden_dim={self.hidden_dim}")
        if self.hidden_dim % 4:
            raise ValueError(f"DiTConfig.hidden_dim must be a multiple of 4 (2-D sin-cos position), "
                             f"got {self.hidden_dim}")

    @property
    def total_out_channels(self) -> int:
        """Channels of the network output, doubled for a learned-variance head."""
        out = self.in_channels if self.out_channels is None else self.out_channels
        return 2 * out if self.learned_variance else out

    @property
    def patches_per_side(self) -> int:
        """Tokens per side, image_size / patch_size."""
        return self.image_size // self.patch_size


# ---------------------------------------------------------------- patches and positions

def patchify(x: Tensor, p: int) -> Tensor:
    """(B, C, H, W) -> (B, (H/p)(W/p), C p p): tokens in row-major patch order, each patch flattened as (C, p, p).

    The (C, p, p) order is a stride-p conv's weight layout, so Conv2d(C, d, p, stride=p)(x) equals
    patchify(x, p) @ weight.view(d, -1).T + bias, token by token.
    """
    B, C, H, W = x.shape
    h, w = H // p, W // p
    return x.view(B, C, h, p, w, p).permute(0, 2, 4, 1, 3, 5).reshape(B, h * w, C * p * p)


def unpatchify(tokens: Tensor, p: int, channels: int, h: int, w: int) -> Tensor:
    """Inverse of patchify: (B, h w, channels p p) -> (B, channels, h p, w p)."""
    B = tokens.shape[0]
    return tokens.view(B, h, w, channels, p, p).permute(0, 3, 1, 4, 2, 5).reshape(B, channels, h * p, w * p)


def sincos_1d(pos: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """(N,) positions -> (N, dim): [sin(pos w_k), cos(pos w_k)], w_k = max_period^(-k / (dim/2)), k < dim/2."""
    k = torch.arange(dim // 2, dtype=torch.float64)
    args = pos.double()[:, None] * max_period ** (-k / (dim // 2))[None]  # (N, dim/2)
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


def sincos_2d(patches_per_side: int, dim: int) -> Tensor:
    """(patches_per_side^2, dim) fixed position of token n = i * patches_per_side + j (row i, column j), ViT style.

    The first dim/2 channels are sincos_1d of the row i, the last dim/2 of the column j (float32).
    """
    idx = torch.arange(patches_per_side)
    rows, cols = idx.repeat_interleave(patches_per_side), idx.repeat(patches_per_side)  # (N,) each, row-major
    return torch.cat([sincos_1d(rows, dim // 2), sincos_1d(cols, dim // 2)], dim=1).float()


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """x (B, N, d) * (1 + scale) + shift, shift and scale (B, d) broadcast over tokens (adaLN, sec. 3.2)."""
    return torch.addcmul(shift[:, None], x, 1 + scale[:, None])


# ---------------------------------------------------------------- blocks

def attention(q: Tensor, k: Tensor, v: Tensor, num_heads: int, mask: Tensor | None = None) -> Tensor:
    """Multi-head attention of q (B, N, d) over k, v (B, L, d); mask (B, L) bool, True = keep -> (B, N, d)."""
    B, N, d = q.shape
    L = k.shape[1]
    q, k, v = (t.view(B, -1, num_heads, d // num_heads).transpose(1, 2) for t in (q, k, v))  # (B, nh, ., d/nh)
    attn_mask = None if mask is None else mask.view(B, 1, 1, L)
    a = dot_product_attention(q, k, v, attn_mask)  # (B, nh, N, d/nh)
    return a.transpose(1, 2).reshape(B, N, d)


class SelfAttention(nn.Module):
    """Multi-head self-attention over the image tokens."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, N, d) -> (B, N, d)."""
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return self.proj(attention(q, k, v, self.num_heads))


class CrossAttention(nn.Module):
    """Image tokens (queries) attend to context tokens (keys, values); output projection zero-initialised.

    Masked context tokens are invisible. A sample whose context is fully masked gets exactly zero from
    this sublayer, i.e. the same output as running the block without context (and never a NaN from a
    softmax over no keys).
    """

    def __init__(self, dim: int, context_dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)  # zeroed in DiT.init_weights: the sublayer starts as the identity

    def forward(self, x: Tensor, context: Tensor, mask: Tensor | None) -> Tensor:
        """x (B, N, d), context (B, L, context_dim) already normalised, mask (B, L) bool or None -> (B, N, d)."""
        k, v = self.kv(context).chunk(2, dim=-1)
        any_keep = None
        if mask is not None:
            any_keep = mask.any(dim=1)  # (B,)
            mask = mask | ~any_keep[:, None]  # a fully masked row attends to everything, then is zeroed below
        a = self.proj(attention(self.q(self.norm(x)), k, v, self.num_heads, mask))
        if any_keep is not None:
            a = a * any_keep[:, None, None].to(a.dtype)
        return a


class DiTBlock(nn.Module):
    """adaLN-Zero transformer block (Peebles & Xie 2023, sec. 3.2, fig. 3).

    (shift, scale, gate) for attention and for the MLP regress from c; the gates start at zero, so a
    fresh block is the identity. With context, a cross-attention sublayer sits between the two.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, context_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(dim, num_heads)
        self.cross = CrossAttention(dim, context_dim, num_heads) if context_dim > 0 else None
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.adaLN = nn.Linear(dim, 6 * dim)  # zeroed in DiT.init_weights

    def forward(self, x: Tensor, c: Tensor, context: Tensor | None = None,
                context_mask: Tensor | None = None) -> Tensor:
        """x (B, N, d), c (B, d) already through SiLU, context (B, L, context_dim) normalised -> (B, N, d)."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN(c).chunk(6, dim=1)  # (B, d) each
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1))
        if context is not None and self.cross is not None:
            x = x + self.cross(x, context, context_mask)
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class FinalLayer(nn.Module):
    """adaLN (shift, scale) then a linear map from each token to its patch, p * p * out_channels values."""

    def __init__(self, dim: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.adaLN = nn.Linear(dim, 2 * dim)
        self.linear = nn.Linear(dim, patch_size * patch_size * out_channels)  # zeroed: fresh output is 0

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """x (B, N, d), c (B, d) already through SiLU -> (B, N, p p out)."""
        shift, scale = self.adaLN(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm(x), shift, scale))


# ---------------------------------------------------------------- the network

class DiT(nn.Module):
    """forward(x (B,C,H,W), noise_level (B,), class_labels=None, context=None, context_mask=None) -> (B, out, H, W)."""

    config_class = DiTConfig

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = c = config
        d = c.hidden_dim
        self.patch_embed = nn.Conv2d(c.in_channels, d, c.patch_size, stride=c.patch_size)
        self.register_buffer("pos_embed", sincos_2d(c.patches_per_side, d)[None], persistent=False)  # (1, N, d), fixed
        self.embed = NoiseEmbedding(FREQ_DIM, d)
        # one extra row: label == num_classes is the null label (classifier-free guidance, Ho & Salimans 2022)
        self.label_embed = nn.Embedding(c.num_classes + 1, d) if c.num_classes > 0 else None
        # one norm on the context, shared by every block's key/value projection
        self.context_norm = nn.LayerNorm(c.context_dim) if c.context_dim > 0 else None
        self.blocks = nn.ModuleList(DiTBlock(d, c.num_heads, c.mlp_ratio, c.context_dim) for _ in range(c.depth))
        self.final = FinalLayer(d, c.patch_size, c.total_out_channels)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """ViT initialisation, then adaLN-Zero: every modulation and the output layer start at zero (sec. 3.2)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.patch_embed.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))  # the conv is a linear map of each flattened patch
        nn.init.zeros_(self.patch_embed.bias)
        for lin in (self.embed.mlp[0], self.embed.mlp[2]):
            nn.init.normal_(lin.weight, std=0.02)
        if self.label_embed is not None:
            nn.init.normal_(self.label_embed.weight, std=0.02)
        zero = [self.final.adaLN, self.final.linear] + [b.adaLN for b in self.blocks]
        zero += [b.cross.proj for b in self.blocks if b.cross is not None]
        for lin in zero:
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x: Tensor, noise_level: Tensor, class_labels: Tensor | None = None,
                context: Tensor | None = None, context_mask: Tensor | None = None) -> Tensor:
        """x (B, C, H, W), noise_level (B,), class_labels (B,) long, context (B, L, D), context_mask (B, L) bool."""
        c = self.config
        expected = (c.in_channels, c.image_size, c.image_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"DiT expects x of shape (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
        check_backbone_input("DiT", x, "(B, C, H, W)", 4, c.in_channels, class_labels, c.num_classes)  # labels
        B = x.shape[0]
        if noise_level.shape != (B,):
            raise ValueError(f"noise_level must have shape ({B},), got {tuple(noise_level.shape)}")
        cond = self.embed(noise_level)  # (B, d)
        if self.label_embed is not None:
            if class_labels is None:  # no labels: the null label, i.e. the unconditional model
                class_labels = torch.full((B,), c.num_classes, dtype=torch.long, device=x.device)
            cond = cond + self.label_embed(class_labels)
        elif class_labels is not None:
            raise ValueError("class_labels given but DiTConfig.num_classes == 0")
        if context is not None:
            if self.context_norm is None:
                raise ValueError("context given but DiTConfig.context_dim == 0")
            if context.ndim != 3 or context.shape[0] != B or context.shape[2] != c.context_dim:
                raise ValueError(f"context must have shape ({B}, L, {c.context_dim}), got {tuple(context.shape)}")
            if context_mask is not None and tuple(context_mask.shape) != tuple(context.shape[:2]):
                raise ValueError(f"context_mask must have shape {tuple(context.shape[:2])}, "
                                 f"got {tuple(context_mask.shape)}")
            context = self.context_norm(context)
            context_mask = None if context_mask is None else context_mask.to(torch.bool)
        elif context_mask is not None:
            raise ValueError("context_mask given without context")
        cond = F.silu(cond)  # every adaLN applies SiLU before its linear; do it once here

        h = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed  # (B, N, d), row-major tokens
        for block in self.blocks:
            h = block(h, cond, context, context_mask)
        out = self.final(h, cond)  # (B, N, p p out)
        return unpatchify(out, c.patch_size, c.total_out_channels, c.patches_per_side, c.patches_per_side)
