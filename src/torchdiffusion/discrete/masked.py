"""Continuous-time masked diffusion (MDLM, Sahoo et al. 2024; MD4, Shi et al. 2024): the process, SUBS, the bound.

Each token of x0 stays itself with probability alpha(t) and is [MASK] otherwise, independently:
q(x_t | x0) = Cat(alpha(t) x0 + (1 - alpha(t)) e_m). As T -> infinity the absorbing D3PM bound becomes the weighted
cross-entropy  -log p(x0) <= int_0^1 alpha'(t) / (1 - alpha(t)) E_q[ sum_(n: x_t^n = m) log p(x0^n | x_t) ] dt
(Sahoo et al. 2024, the continuous-time NELBO; Shi et al. 2024, its weighted cross-entropy form), whose integrand
is >= 0 since alpha' < 0.
"""

from __future__ import annotations

import math

import torch

from ..rng import rand
from .interpolating import InterpolatingProcess
from .process import as_time
from .schedules import masking_alpha

Tensor = torch.Tensor


class MaskedDiffusion(InterpolatingProcess):
    """The absorbing kernel in continuous time on [0, 1] with abar = alpha(t) ("linear" 1 - t or "cosine").

    Classes are the vocab_size data tokens then [MASK] (mask_id = vocab_size); x_1 is all [MASK].
    block_size L' (None: the whole sequence, plain MDLM) makes it block diffusion (BD3-LM, Arriola et al. 2025):
    each block of L' tokens is masked at its own time and denoised given the clean blocks before it (block.py).
    """

    def __init__(self, vocab_size: int, schedule: str = "linear", block_size: int | None = None):
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
        if block_size is not None and block_size < 1:
            raise ValueError(f"block_size must be >= 1 (or None: the whole sequence), got {block_size}")
        masking_alpha(schedule, torch.zeros(1, dtype=torch.float64))  # unknown names fail here
        self.vocab_size, self.schedule, self.block_size = vocab_size, schedule, block_size
        self.num_classes, self.mask_id, self.num_steps = vocab_size + 1, vocab_size, None
        self.pi = torch.zeros(self.num_classes, dtype=torch.float64)
        self.pi[vocab_size] = 1.0

    def alpha_bar(self, t: Tensor) -> Tensor:
        """alpha(t), clamped to [0, 1] outside the time range."""
        return masking_alpha(self.schedule, torch.as_tensor(t, dtype=torch.float64))[0].clamp(0.0, 1.0)

    def weight(self, t: Tensor) -> Tensor:
        """-alpha'(t) / (1 - alpha(t)) >= 0, the bound's weight on the masked tokens' cross-entropy (inf at t = 0)."""
        alpha, d_alpha = masking_alpha(self.schedule, torch.as_tensor(t, dtype=torch.float64))
        return -d_alpha / (1 - alpha)


def subs_logits(logits: Tensor, x_t: Tensor, mask_id: int) -> Tensor:
    """The SUBS parameterisation (Sahoo et al. 2024, sec. 3): zero mass on [MASK], and an unmasked token carries
    over (p(x0 = x_t^n) = 1). -> log-probabilities (B, L, K), usable as logits."""
    logits = logits.index_fill(-1, torch.tensor([mask_id], device=logits.device), -torch.inf)
    log_p = torch.log_softmax(logits, dim=-1)
    carry = torch.full_like(log_p, -torch.inf).scatter(-1, x_t[..., None], 0.0)
    return torch.where((x_t != mask_id)[..., None], carry, log_p)


def masked_terms(process: MaskedDiffusion, log_probs: Tensor, x0: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
    """The bound's integrand at (x_t, t): -alpha'/(1 - alpha) sum over masked n of -log p(x0^n | x_t) -> (B,) nats.

    log_probs (B, L, K) is log p(x0 | x_t) (SUBS or any log-softmax); unmasked positions contribute nothing. t is (B,)
    or, for block diffusion's time per token, (B, L).
    """
    nll = -torch.gather(log_probs, -1, x0[..., None])[..., 0]  # (B, L)
    masked = x_t == process.mask_id
    w = process.weight(t).to(nll.device, torch.float64)  # inf only at t = 0 where nothing is masked
    w = w[:, None] if w.ndim == 1 else w  # (B, 1) or (B, L)
    terms = torch.where(masked, w * nll.double(), torch.zeros_like(w * nll.double()))
    return terms.sum(-1)


def sample_times(batch: int, generator: torch.Generator | None = None, *, antithetic: bool = True,
                 t_min: float = 1e-5, device: torch.device | str = "cpu") -> Tensor:
    """t ~ U(t_min, 1) per sample; antithetic: one uniform shifted by i / B (the low-discrepancy sampler of Kingma et
    al. 2021, used by MDLM), which keeps the estimator unbiased and cuts its variance. -> (B,) float64."""
    if antithetic:
        u = (rand((1,), generator, dtype=torch.float64, device=device) + torch.arange(batch, device=device) / batch) % 1
    else:
        u = rand((batch,), generator, dtype=torch.float64, device=device)
    return t_min + (1 - t_min) * u


def masked_loss(denoiser, x0: Tensor, *, generator: torch.Generator | None = None, antithetic: bool = True,
                t: Tensor | None = None) -> Tensor:
    """One-sample Monte Carlo estimate of the continuous-time bound per sequence (B,) nats (its mean is the NELBO).

    denoiser(x_t, t) -> logits (B, L, K) with a MaskedDiffusion as denoiser.process; the SUBS parameterisation is
    applied here, so the loss never rewards mass on [MASK] or on changing an unmasked token.
    """
    process: MaskedDiffusion = denoiser.process
    B = x0.shape[0]
    t = sample_times(B, generator, antithetic=antithetic, device=x0.device) if t is None else as_time(t, B, x0.device)
    x_t = process.sample_marginal(x0, t, generator)
    log_probs = subs_logits(denoiser(x_t, t).double(), x_t, process.mask_id)
    return masked_terms(process, log_probs, x0, x_t, t)


def nats_to_bits_per_token(nats: Tensor | float, length: int) -> float:
    """Mean nats per sequence -> bits per token."""
    return float(torch.as_tensor(nats, dtype=torch.float64).mean()) / (length * math.log(2))
