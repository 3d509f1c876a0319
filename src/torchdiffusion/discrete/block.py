"""Block diffusion (BD3-LM, Arriola et al. 2025): masked diffusion inside blocks of L' tokens, autoregressive over them.

The sequence is cut into blocks x^1 .. x^B of L' tokens, log p(x) = sum_b log p(x^b | x^(<b)), and each factor is
bounded by MDLM's continuous-time NELBO of the block given the clean blocks before it (Arriola et al. 2025, sec. 3):
  -log p(x) <= sum_b int_0^1 -alpha'(t) / (1 - alpha(t)) E_q[ sum_(n in b: x_t^n = m) -log p(x^n | x_t^b, x^(<b)) ] dt.
L' = 1 is the autoregressive model (a masked token's weight integrates to one: int (1/t) t dt = 1), L' = L is MDLM.
Training vectorises all blocks in one pass over [x_t, x0] (2L tokens, sec. 3): x_t's block b attends to itself
(block-diagonal) and to x0's blocks before b (offset block-causal); x0's block b attends to x0's blocks <= b
(block-causal) and never to x_t. Both copies of token n sit at position n. Sampling goes block by block, MDLM's
ancestral sampler inside each.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..rng import rand
from .masked import MaskedDiffusion, masked_terms, sample_times, subs_logits
from .sampling import SamplerStats, ancestral

Tensor = torch.Tensor


def block_ids(length: int, block_size: int, device: torch.device | str = "cpu") -> Tensor:
    """The block of each position, n // L' -> (L,) long (the last block may be shorter)."""
    return torch.arange(length, device=device) // block_size


def block_diffusion_mask(length: int, block_size: int, device: torch.device | str = "cpu") -> Tensor:
    """The (2L, 2L) bool attention mask over [x_t, x0], True = attend (Arriola et al. 2025, sec. 3, M_full):
    [[M_BD, M_OBC], [0, M_BC]] with M_BD block-diagonal, M_OBC strictly block-causal, M_BC block-causal."""
    b = block_ids(length, block_size, device)
    same, before = b[:, None] == b[None, :], b[:, None] > b[None, :]  # (L, L) each
    top = torch.cat([same, before], dim=1)  # x_t rows: its own block of x_t, earlier blocks of x0
    bottom = torch.cat([torch.zeros_like(same), same | before], dim=1)  # x0 rows: x0 blocks up to its own
    return torch.cat([top, bottom], dim=0)


class BlockDenoiser(nn.Module):
    """p(x0^n | x_t^(b(n)), x0^(<b(n))) of every position n from one backbone call on [x_t, context] -> SUBS logits.

    The backbone must take `attn_mask` and `positions` (SequenceTransformer) and ignore the time (time_conditioning
    false: under masking the posterior does not depend on t, Sahoo et al. 2024). context is the clean x0; a sampler
    passes x_t itself, whose blocks before the current one are clean.
    """

    time_independent = True

    def __init__(self, backbone: nn.Module, process: MaskedDiffusion):
        super().__init__()
        if process.block_size is None:
            raise ValueError("BlockDenoiser needs a MaskedDiffusion with a block_size")
        if getattr(getattr(backbone, "config", None), "time_conditioning", False):
            raise ValueError("block diffusion needs a backbone without time conditioning (time_conditioning: false)")
        self.backbone, self.process = backbone, process
        self._masks: dict[tuple[int, str], Tensor] = {}

    @property
    def num_classes(self) -> int:
        """Classes the backbone is conditioned on: block diffusion here is unconditional."""
        return 0

    def attention_mask(self, length: int, device: torch.device) -> Tensor:
        """block_diffusion_mask(length, L'), kept per (length, device)."""
        key = (length, str(device))
        if key not in self._masks:
            self._masks[key] = block_diffusion_mask(length, self.process.block_size, device)
        return self._masks[key]

    def forward(self, x_t: Tensor, t: Tensor | None = None, context: Tensor | None = None) -> Tensor:
        """x_t (B, L) ids, t (ignored), context (B, L) clean ids (None: x_t itself) -> SUBS logits (B, L, K)."""
        context = x_t if context is None else context
        if context.shape != x_t.shape:
            raise ValueError(f"context must have x_t's shape {tuple(x_t.shape)}, got {tuple(context.shape)}")
        L = x_t.shape[1]
        positions = torch.arange(L, device=x_t.device).repeat(2)  # both copies of token n at position n
        logits = self.backbone(torch.cat([x_t, context.to(x_t.device)], dim=1), None,
                               attn_mask=self.attention_mask(L, x_t.device), positions=positions)[:, :L]
        return subs_logits(logits, x_t, self.process.mask_id)


def per_token_times(t_blocks: Tensor, length: int, block_size: int) -> Tensor:
    """Each block's time (B, num_blocks) spread over its tokens -> (B, L)."""
    return t_blocks[:, block_ids(length, block_size, t_blocks.device)]


def sample_block_times(batch: int, length: int, block_size: int, generator: torch.Generator | None = None, *,
                       antithetic: bool = True, device: torch.device | str = "cpu") -> Tensor:
    """One t ~ U(t_min, 1) per block, antithetic over all batch x blocks draws (unbiased, as for MDLM) -> (B, L)."""
    num_blocks = math.ceil(length / block_size)
    t = sample_times(batch * num_blocks, generator, antithetic=antithetic, device=device).view(batch, num_blocks)
    return per_token_times(t, length, block_size)


def mask_tokens(process: MaskedDiffusion, x0: Tensor, t: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """x_t ~ q(x_t | x0) with a time per token t (B, L): token n is [MASK] with probability 1 - alpha(t_n)."""
    keep = process.alpha_bar(t).to(x0.device)
    u = rand(tuple(x0.shape), generator, dtype=torch.float64, device=x0.device)
    return torch.where(u < keep, x0, torch.full_like(x0, process.mask_id))


def block_loss(denoiser: BlockDenoiser, x0: Tensor, *, generator: torch.Generator | None = None,
               antithetic: bool = True, t: Tensor | None = None) -> Tensor:
    """One-sample estimate of the block NELBO per sequence (B,) nats; t (B, L) times per token (constant within a
    block; None: `sample_block_times`)."""
    process: MaskedDiffusion = denoiser.process
    B, L = x0.shape
    if t is None:
        t = sample_block_times(B, L, process.block_size, generator, antithetic=antithetic, device=x0.device)
    x_t = mask_tokens(process, x0, t, generator)
    return masked_terms(process, denoiser(x_t, t, context=x0).double(), x0, x_t, t)


@torch.no_grad()
def block_ancestral(denoiser: BlockDenoiser, x: Tensor, steps: int, *, generator: torch.Generator | None = None,
                    stats: SamplerStats | None = None, prompt_len: int = 0) -> Tensor:
    """Block-by-block sampling: x (B, L) with [MASK] where to draw (the first prompt_len tokens given) -> (B, L).

    Block b runs MDLM's ancestral sampler (`ancestral`, with its cache) for ceil(steps / num_blocks) steps on
    x[:, :end of b]; the clean tokens before it (earlier blocks, the prompt) are put back after every step, since
    the reverse step from t = 1 cannot keep a token the forward process would have masked (as for a prompt)."""
    L, size = x.shape[1], denoiser.process.block_size
    num_blocks = math.ceil(L / size)
    per_block = max(1, math.ceil(steps / num_blocks))
    x = x.clone()
    for b in range(num_blocks):
        end, fixed = min(L, (b + 1) * size), max(b * size, prompt_len)
        if end <= fixed:
            continue  # a block the prompt fills
        clean = x[:, :fixed].clone()

        def keep_clean(i: int, t: float, xs: Tensor, clean: Tensor = clean) -> None:
            xs[:, :clean.shape[1]] = clean  # in place: the sampler's next step reads this tensor

        x[:, :end] = ancestral(denoiser, x[:, :end], per_block, generator=generator, stats=stats,
                               callback=keep_clean)
    return x
