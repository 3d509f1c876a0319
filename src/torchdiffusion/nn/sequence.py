"""Transformers over token sequences: the bidirectional denoiser of discrete diffusion and its causal twin.

`SequenceTransformer` maps token ids x (B, L) and a noise level (B,) to logits (B, L, K'): a token embedding plus a
learned or sinusoidal position, pre-norm blocks whose (shift, scale, gate) regress from the time embedding as in
the DiT's adaLN-Zero (Peebles & Xie 2023, sec. 3.2), and an adaLN final layer. MDLM's denoiser is this network
(Sahoo et al. 2024 use a DiT-style backbone with adaLN time conditioning). Without time conditioning the adaLN
inputs are one learned vector, i.e. a learned affine per block. `CausalTransformer` is the same network with
causal attention and no time, for the autoregressive baseline: output n predicts token n + 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import dot_product_attention
from .config import BackboneConfig
from .dit import modulate, sincos_1d
from .embeddings import NoiseEmbedding

Tensor = torch.Tensor

FREQ_DIM = 256  # sinusoidal features of the noise level before its MLP, as in the DiT
POSITIONS = ("learned", "sinusoidal", "rotary")


@dataclass
class SequenceTransformerConfig(BackboneConfig):
    """Configuration of `SequenceTransformer`; saved beside the weights."""

    vocab_size: int = 28  # K input classes, an absorbing process's [MASK] included
    seq_len: int = 128  # L: the longest sequence (positions are built for it); shorter inputs are allowed
    out_classes: int | None = None  # logits per position; None: vocab_size
    hidden_dim: int = 256
    depth: int = 6
    num_heads: int = 4
    mlp_ratio: float = 4.0
    # "learned" (normal(0, 0.02) init, added), "sinusoidal" (fixed, added; Vaswani et al. 2017) or "rotary" (RoPE on
    # queries and keys, Su et al. 2021, as in MDLM's DiT): with rotary, attending to a neighbour needs no learning of
    # positions, which a bidirectional denoiser needs to use its context (see docs/discrete.md)
    positions: str = "learned"
    time_conditioning: bool = True  # False: the output ignores the noise level (MDLM: not needed when masking)
    causal: bool = False  # True: position n attends to positions <= n only
    num_classes: int = 0  # > 0: a label embedding joins the adaLN input; label == num_classes is null (CFG)

    def __post_init__(self) -> None:
        self.check_at_least(1, "vocab_size", "seq_len", "hidden_dim", "depth", "num_heads")
        self.check_at_least(1, "out_classes", optional=True)
        self.check_at_least(0, "num_classes")
        if not self.mlp_ratio > 0:
            raise ValueError(f"{type(self).__name__}.mlp_ratio must be > 0, got {self.mlp_ratio}")
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"{type(self).__name__}.num_heads={self.num_heads} must divide "
                             f"hidden_dim={self.hidden_dim}")
        if self.positions not in POSITIONS:
            raise ValueError(f"{type(self).__name__}.positions must be one of {', '.join(POSITIONS)}, "
                             f"got {self.positions!r}")
        if self.positions == "sinusoidal" and self.hidden_dim % 2:
            raise ValueError(f"{type(self).__name__}.hidden_dim must be even for sinusoidal positions")
        if self.positions == "rotary" and (self.hidden_dim // self.num_heads) % 2:
            raise ValueError(f"{type(self).__name__}: rotary positions need an even head size, got hidden_dim / "
                             f"num_heads = {self.hidden_dim // self.num_heads}")

    @property
    def data_shape(self) -> tuple[int, ...]:
        """(L,): a sample is a sequence of seq_len token ids."""
        return (int(self.seq_len),)

    @property
    def num_outputs(self) -> int:
        """Logits per position."""
        return self.vocab_size if self.out_classes is None else self.out_classes


@dataclass
class CausalTransformerConfig(SequenceTransformerConfig):
    """`SequenceTransformerConfig` with causal attention and no time conditioning by default."""

    time_conditioning: bool = False
    causal: bool = True


def rotary_angles(length: int, head_dim: int, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    """(cos, sin) (L, head_dim) of RoPE (Su et al. 2021, eq. 34): position n turns channel pair (i, i + head_dim/2)
    by n base^(-2i / head_dim)."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (head_dim / 2,)
    angles = torch.arange(length, dtype=torch.float64)[:, None] * inv_freq[None]  # (L, head_dim / 2)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().float(), angles.sin().float()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x (..., L, h) rotated pairwise: x cos + rotate_half(x) sin, rotate_half(a, b) = (-b, a) -> (..., L, h).

    Then q_m . k_n depends on positions only through m - n (Su et al. 2021, sec. 3.2)."""
    a, b = x.chunk(2, dim=-1)
    return x * cos.to(x.dtype) + torch.cat([-b, a], dim=-1) * sin.to(x.dtype)


class SelfAttention(nn.Module):
    """Multi-head self-attention over the tokens, optionally causal, optionally with rotary positions."""

    def __init__(self, dim: int, num_heads: int, causal: bool, rotary: bool = False):
        super().__init__()
        self.num_heads, self.causal, self.rotary = num_heads, causal, rotary
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, mask: Tensor | None = None, positions: Tensor | None = None) -> Tensor:
        """x (B, L, d), mask (L, L) bool (True = attend; None: causal or full), positions (L,) of the rotary angles
        (None: 0..L-1) -> (B, L, d)."""
        B, L, d = x.shape
        q, k, v = (t.view(B, L, self.num_heads, d // self.num_heads).transpose(1, 2)
                   for t in self.qkv(x).chunk(3, dim=-1))  # (B, nh, L, d / nh) each
        if self.rotary:
            n = L if positions is None else int(positions.max()) + 1
            cos, sin = rotary_angles(n, d // self.num_heads)
            if positions is not None:  # e.g. block diffusion's [x_t, x0]: both copies of a token share its position
                cos, sin = cos[positions.cpu()], sin[positions.cpu()]
            cos, sin = cos.to(x.device), sin.to(x.device)
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if mask is None and self.causal:
            mask = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
        a = dot_product_attention(q, k, v, mask)  # (B, nh, L, d / nh)
        return self.proj(a.transpose(1, 2).reshape(B, L, d))


class SequenceBlock(nn.Module):
    """adaLN-Zero transformer block (Peebles & Xie 2023, fig. 3): attention and MLP sublayers gated from c."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, causal: bool, rotary: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(dim, num_heads, causal, rotary)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.adaLN = nn.Linear(dim, 6 * dim)  # zeroed at init: a fresh block is the identity

    def forward(self, x: Tensor, c: Tensor, mask: Tensor | None = None, positions: Tensor | None = None) -> Tensor:
        """x (B, L, d), c (B, d) already through SiLU, mask and positions as in `SelfAttention` -> (B, L, d)."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN(c).chunk(6, dim=1)  # (B, d) each
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1), mask, positions)
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class SequenceTransformer(nn.Module):
    """forward(x (B, L) long ids, noise_level (B,) or None) -> logits (B, L, num_outputs).

    noise_level is required with time_conditioning and ignored without it (so a time-independent denoiser may still
    be called with t). L may be shorter than seq_len.
    """

    config_class: type[SequenceTransformerConfig] = SequenceTransformerConfig

    def __init__(self, config: SequenceTransformerConfig):
        super().__init__()
        self.config = c = config
        d = c.hidden_dim
        self.token_embed = nn.Embedding(c.vocab_size, d)
        if c.positions == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, c.seq_len, d))
        elif c.positions == "rotary":  # positions enter the attention only; nothing is added to the tokens
            self.register_buffer("pos_embed", torch.zeros(1, c.seq_len, d), persistent=False)
        else:
            self.register_buffer("pos_embed", sincos_1d(torch.arange(c.seq_len), d).float()[None], persistent=False)
        if c.time_conditioning:
            self.time_embed = NoiseEmbedding(FREQ_DIM, d)
        else:  # one learned conditioning vector shared by every sample
            self.cond = nn.Parameter(torch.zeros(d))
        # one extra row: label == num_classes is the null label (classifier-free guidance, Ho & Salimans 2022)
        self.label_embed = nn.Embedding(c.num_classes + 1, d) if c.num_classes else None
        self.blocks = nn.ModuleList(SequenceBlock(d, c.num_heads, c.mlp_ratio, c.causal, c.positions == "rotary")
                                    for _ in range(c.depth))
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final_adaLN = nn.Linear(d, 2 * d)
        self.head = nn.Linear(d, c.num_outputs)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Xavier linears, normal(0, 0.02) embeddings, then adaLN-Zero: modulations and the head start at zero, so a
        fresh network outputs uniform logits (Peebles & Xie 2023, sec. 3.2)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.token_embed.weight, std=0.02)
        if self.label_embed is not None:
            nn.init.normal_(self.label_embed.weight, std=0.02)
        if isinstance(self.pos_embed, nn.Parameter):
            nn.init.normal_(self.pos_embed, std=0.02)
        if self.config.time_conditioning:
            for lin in (self.time_embed.mlp[0], self.time_embed.mlp[2]):
                nn.init.normal_(lin.weight, std=0.02)
        for lin in [self.final_adaLN, self.head] + [b.adaLN for b in self.blocks]:
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x: Tensor, noise_level: Tensor | None = None, class_labels: Tensor | None = None, *,
                attn_mask: Tensor | None = None, positions: Tensor | None = None) -> Tensor:
        """x (B, L) long in [0, vocab_size), noise_level (B,), class_labels (B,) long in [0, num_classes] (None: the
        null label num_classes) -> (B, L, num_outputs).

        attn_mask (L, L) bool, True = row attends to column, replaces the full (or causal) attention; positions (L,)
        long in [0, seq_len) replaces 0..L-1 (then L may exceed seq_len: block diffusion feeds [x_t, x0], Arriola et
        al. 2025, sec. 3)."""
        c = self.config
        name = type(self).__name__
        longest = c.seq_len if positions is None else 2 * c.seq_len
        if x.ndim != 2 or x.is_floating_point() or x.dtype == torch.bool or not 0 < x.shape[1] <= longest:
            raise ValueError(f"{name} takes integer token ids of shape (B, L) with 0 < L <= {longest}, "
                             f"got {x.dtype} {tuple(x.shape)}")
        if positions is not None and (positions.shape != (x.shape[1],) or int(positions.min()) < 0
                                      or int(positions.max()) >= c.seq_len):
            raise ValueError(f"{name}: positions must be ({x.shape[1]},) integers in [0, {c.seq_len}), got "
                             f"{tuple(positions.shape)}")
        if attn_mask is not None and attn_mask.shape != (x.shape[1], x.shape[1]):
            raise ValueError(f"{name}: attn_mask must be ({x.shape[1]}, {x.shape[1]}), got {tuple(attn_mask.shape)}")
        if x.numel() and (bool((x < 0).any()) or bool((x >= c.vocab_size).any())):
            raise ValueError(f"{name}: token ids must be in [0, {c.vocab_size}), got values in "
                             f"[{int(x.min())}, {int(x.max())}]")
        B, L = x.shape
        if c.time_conditioning:
            if noise_level is None or noise_level.shape != (B,):
                shape = None if noise_level is None else tuple(noise_level.shape)
                raise ValueError(f"{name} is time-conditioned: noise_level must have shape ({B},), got {shape}")
            cond = self.time_embed(noise_level.to(x.device))  # (B, d)
        else:
            cond = self.cond.expand(B, -1)
        cond = cond + self.label_cond(class_labels, B, x.device)
        cond = F.silu(cond)  # every adaLN applies SiLU before its linear; do it once here
        pos = self.pos_embed[:, :L] if positions is None else self.pos_embed[:, positions.to(x.device)]
        h = self.token_embed(x) + pos  # (B, L, d)
        if attn_mask is not None:
            attn_mask = attn_mask.to(x.device)
        for block in self.blocks:
            h = block(h, cond, attn_mask, positions)
        shift, scale = self.final_adaLN(cond).chunk(2, dim=1)
        return self.head(modulate(self.final_norm(h), shift, scale))  # (B, L, num_outputs)


    def label_cond(self, class_labels: Tensor | None, batch: int, device: torch.device) -> Tensor | float:
        """The label embedding (B, d) added to the conditioning vector (0 for an unconditional network)."""
        c = self.config
        if self.label_embed is None:
            if class_labels is not None:
                raise ValueError(f"class_labels given but {type(self).__name__}'s num_classes is 0 (unconditional)")
            return 0.0
        if class_labels is None:  # no labels: the null label, i.e. the unconditional model
            class_labels = torch.full((batch,), c.num_classes, dtype=torch.long, device=device)
        if class_labels.shape != (batch,) or class_labels.is_floating_point() or \
                bool((class_labels < 0).any()) or bool((class_labels > c.num_classes).any()):
            raise ValueError(f"class_labels must be ({batch},) integers in [0, {c.num_classes}] ({c.num_classes} is "
                             f"the null label), got {class_labels.dtype} {tuple(class_labels.shape)}")
        return self.label_embed(class_labels.to(device))


class CausalTransformer(SequenceTransformer):
    """The autoregressive twin: causal attention, no time input; logits at n are p(x_(n+1) | x_(<=n))."""

    config_class = CausalTransformerConfig
