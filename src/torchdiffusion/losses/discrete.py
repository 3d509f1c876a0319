"""Training objectives of token runs (loss.kind masked | d3pm | autoregressive), in nats per token.

The trainer hands the objective the whole global micro-batch of ids and its noise generator: t and x_t are drawn for
all of it (so every rank draws the same) and only this rank's slice `mine` goes through the network. Losses are
per sequence divided by its length, so logs read in nats per token and gradient clipping does not depend on L.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..discrete.autoregressive import autoregressive_nll
from ..discrete.block import mask_tokens, sample_block_times
from ..discrete.bound import cross_entropy, sample_steps, step_terms
from ..discrete.masked import masked_terms, sample_times, subs_logits
from .objectives import TrainingObjective

Tensor = torch.Tensor


@dataclass(frozen=True)
class DiscreteObjective(TrainingObjective):
    """A loss over token ids x0 (B, L): loss(model, x0, generator=, mine=, config=, class_labels=) -> (b,) nats per
    token. class_labels (b,) is this rank's slice, already dropped to the null label where the trainer chose to."""

    def __call__(self, model: nn.Module, x0: Tensor, *, generator: torch.Generator | None = None,
                 mine: slice = slice(None), config: Any = None, class_labels: Tensor | None = None,
                 **_: Any) -> Tensor:
        cond = {} if class_labels is None else {"class_labels": class_labels}
        return self.loss(model, x0, generator=generator, mine=mine, config=config, **cond) / x0.shape[1]


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _masked(model: nn.Module, x0: Tensor, *, generator: torch.Generator | None, mine: slice, config: Any,
            **cond: Tensor) -> Tensor:
    """MDLM's continuous-time bound (Sahoo et al. 2024, eq. 10), antithetic t over the global micro-batch; with a
    process.block_size, BD3-LM's sum of block bounds (Arriola et al. 2025, sec. 3), one t per block."""
    process = model.process
    if process.block_size is not None:
        t = sample_block_times(x0.shape[0], x0.shape[1], process.block_size, generator)  # (B, L)
        x_t = mask_tokens(process, x0, t, generator)
        dev = _device(model)
        x0, x_t, t = x0[mine].to(dev), x_t[mine].to(dev), t[mine].to(dev)
        return masked_terms(process, model(x_t, t, context=x0).double(), x0, x_t, t)
    t = sample_times(x0.shape[0], generator)
    x_t = process.sample_marginal(x0, t, generator)
    dev = _device(model)
    x0, x_t, t = x0[mine].to(dev), x_t[mine].to(dev), t[mine].to(dev)
    log_probs = subs_logits(model(x_t, t, **cond).double(), x_t, process.mask_id)
    return masked_terms(process, log_probs, x0, x_t, t)


def _d3pm(model: nn.Module, x0: Tensor, *, generator: torch.Generator | None, mine: slice, config: Any,
          **cond: Tensor) -> Tensor:
    """D3PM's L_T + T (L_(t-1) + lambda CE) with t ~ U{1..T} (Austin et al. 2021, eq. 5, the auxiliary term summed over
    t as the bound is; lambda = loss.hybrid_lambda)."""
    process = model.process
    t = sample_steps(x0.shape[0], process.num_steps, generator)
    x_t = process.sample_marginal(x0, t, generator)
    dev = _device(model)
    x0, x_t, t = x0[mine].to(dev), x_t[mine].to(dev), t[mine].to(dev)
    logits = model(x_t, t, **cond)
    loss = process.prior_kl(x0) + process.num_steps * step_terms(process, logits, x0, x_t, t)
    lam = getattr(config, "hybrid_lambda", 0.0)
    return loss + process.num_steps * lam * cross_entropy(process, logits, x0) if lam else loss


def _autoregressive(model: nn.Module, x0: Tensor, *, generator: torch.Generator | None, mine: slice,
                    config: Any, **cond: Tensor) -> Tensor:
    """-log p(x0) by next-token cross-entropy: no noise at all."""
    return autoregressive_nll(model, x0[mine].to(_device(model)))


MASKED = DiscreteObjective(_masked)
D3PM = DiscreteObjective(_d3pm)
AUTOREGRESSIVE = DiscreteObjective(_autoregressive)
