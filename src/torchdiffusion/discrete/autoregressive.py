"""The autoregressive baseline: p(x) = prod_n p(x_n | x_(<n)) with a causal transformer, its loss and its sampler.

The sequence is read after a [BOS] token (id vocab_size), so position n's output predicts x_n from x_(<n) and every
token of a window is scored, the first one included: -log p(x) is exact and compares with a diffusion model's bound
over the same L tokens (Vaswani et al. 2017; the next-token cross-entropy of GPT, Radford et al. 2018).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .process import sample_categorical
from .sampling import DiscreteMethod

Tensor = torch.Tensor


class Autoregressive:
    """The left-to-right factorisation over vocab_size token classes; the backbone's inputs add [BOS]."""

    def __init__(self, vocab_size: int):
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
        self.vocab_size, self.bos_id, self.num_classes = vocab_size, vocab_size, vocab_size + 1
        self.mask_id = None


class AutoregressiveModel(nn.Module):
    """A causal backbone (x (B, L) -> (B, L, K)) as log p(x_n | x_(<n)) for every n, [BOS] never predicted."""

    def __init__(self, backbone: nn.Module, process: Autoregressive):
        super().__init__()
        self.backbone, self.process = backbone, process

    def next_log_probs(self, inputs: Tensor) -> Tensor:
        """inputs (B, n) = [BOS, x_1..x_(n-1)] -> log p(x_(k+1) | inputs[:, :k+1]) (B, n, vocab_size) float32."""
        logits = self.backbone(inputs)[..., : self.process.vocab_size]
        return torch.log_softmax(logits.float(), dim=-1)

    def forward(self, x0: Tensor) -> Tensor:
        """x0 (B, L) ids -> log p(x0_n | x0_(<n)) for every position, (B, L, vocab_size)."""
        bos = torch.full_like(x0[:, :1], self.process.bos_id)
        return self.next_log_probs(torch.cat([bos, x0[:, :-1]], dim=1))


def autoregressive_nll(model: AutoregressiveModel, x0: Tensor) -> Tensor:
    """-log p(x0) = -sum_n log p(x0_n | x0_(<n)), the next-token cross-entropy, per sequence -> (B,) nats."""
    log_p = model(x0)
    return -torch.gather(log_p, -1, x0[..., None])[..., 0].double().sum(-1)


@torch.no_grad()
def autoregressive(model: AutoregressiveModel, prompt: Tensor, steps: int, *,
                   generator: torch.Generator | None = None,
                   callback: Callable[[int, float, Tensor], None] | None = None) -> Tensor:
    """Ancestral sampling token by token: prompt (B, P) ids (P may be 0) -> (B, P + steps), one call per token.

    The causal network has no key-value cache here, so token n costs a pass over n + 1 positions.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    bos = torch.full((prompt.shape[0], 1), model.process.bos_id, dtype=torch.long, device=prompt.device)
    x = torch.cat([bos, prompt.long()], dim=1)
    for i in range(steps):
        log_p = model.next_log_probs(x)[:, -1]  # (B, vocab_size): the next token
        x = torch.cat([x, sample_categorical(log_p, generator)[:, None].to(x.device)], dim=1)
        if callback is not None:
            callback(i, float(steps - i - 1), x[:, 1:])
    return x[:, 1:]


AUTOREGRESSIVE = DiscreteMethod(autoregressive, kind="autoregressive", evals_per_step=1)
