"""The discrete-time variational bound of D3PM and its hybrid loss (Austin et al. 2021, sec. 3.3 and eq. 5).

-log p(x0) <= L_T + sum_(t=2..T) L_(t-1) + L_0, with
  L_T     = KL(q(x_T | x0) || p(x_T)),
  L_(t-1) = E_q(x_t | x0) KL(q(x_(t-1) | x_t, x0) || p(x_(t-1) | x_t)),
  L_0     = E_q(x_1 | x0) [-log p(x0 | x_1)],
all summed over a sequence's positions (nats per sequence). The hybrid loss adds lambda E[-log p(x0 | x_t)].
A denoiser here is the discrete contract: denoiser(x_t (B, L), t (B,)) -> logits of p(x0 | x_t) (B, L, K), with
`denoiser.process` the CategoricalProcess it was trained on.
"""

from __future__ import annotations

import torch

from ..rng import rand
from .process import CategoricalProcess, as_time, categorical_kl

Tensor = torch.Tensor


def step_terms(process: CategoricalProcess, logits: Tensor, x0: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
    """L_(t-1) at this x_t for t >= 2, and -log p(x0 | x_1) for t = 1, summed over positions -> (B,) nats.

    logits (B, L, K) of p(x0 | x_t); x0, x_t (B, L) ids; t (B,) integer steps in 1..T.
    """
    t = torch.as_tensor(t).round().to(torch.float64)
    s = t - 1
    log_p = process.reverse_log_probs(x_t, logits, s, t)  # log p(x_(t-1) | x_t)
    # at t = 1 the posterior q(x_0 | x_1, x0) is the point mass on x0, so the KL is L_0 = -log p(x0 | x_1)
    log_q = process.posterior_log_probs(x_t, x0, s, t)
    return categorical_kl(log_q, log_p).sum(-1)


def cross_entropy(process: CategoricalProcess, logits: Tensor, x0: Tensor) -> Tensor:
    """-log p(x0 | x_t) summed over positions (the hybrid loss's auxiliary term) -> (B,) nats."""
    log_p0 = process.x0_log_probs(logits)
    return -torch.gather(log_p0, -1, x0[..., None])[..., 0].clamp(min=-1e4).sum(-1)


def sample_steps(batch: int, T: int, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> Tensor:
    """t ~ U{1, ..., T} per sample -> (B,) float64 integers."""
    u = rand((batch,), generator, dtype=torch.float64, device=device)
    return (u * T).floor().clamp(max=T - 1) + 1


def d3pm_loss(denoiser, x0: Tensor, *, generator: torch.Generator | None = None, hybrid_weight: float = 0.0,
              t: Tensor | None = None) -> Tensor:
    """Unbiased one-step estimate of the bound per sequence, L_T + T L_(t-1) with t ~ U{1..T}, plus T hybrid_weight
    times the cross-entropy -log p(x0 | x_t): L_T + T (L_(t-1) + lambda CE) estimates Austin et al. 2021's
    L_vb + lambda sum_t E[-log p(x0 | x_t)] (eq. 5; lambda = 0.01 for text, 0.001 for images, which their code adds
    to the one-step term) -> (B,) nats."""
    process: CategoricalProcess = denoiser.process
    T, B = process.num_steps, x0.shape[0]
    if T is None:
        raise ValueError("d3pm_loss needs a discrete-time process; use masked_loss for continuous time")
    t = sample_steps(B, T, generator, x0.device) if t is None else as_time(t, B, x0.device)
    x_t = process.sample_marginal(x0, t, generator)
    logits = denoiser(x_t, t)
    loss = process.prior_kl(x0) + T * step_terms(process, logits, x0, x_t, t)
    if hybrid_weight:
        loss = loss + T * hybrid_weight * cross_entropy(process, logits, x0)
    return loss


@torch.no_grad()
def d3pm_bound(denoiser, x0: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """The full bound L_T + sum_t L_(t-1) + L_0 per sequence, one x_t drawn per step (T denoiser calls): an unbiased
    estimate of the negative ELBO, with less variance than d3pm_loss -> (B,) nats."""
    process: CategoricalProcess = denoiser.process
    if process.num_steps is None:
        raise ValueError("d3pm_bound needs a discrete-time process")
    total = process.prior_kl(x0)
    for step in range(1, process.num_steps + 1):
        t = as_time(step, x0.shape[0], x0.device)
        x_t = process.sample_marginal(x0, t, generator)
        total = total + step_terms(process, denoiser(x_t, t), x0, x_t, t)
    return total
