"""Kernels that interpolate between the identity and a stationary distribution pi: uniform and absorbing D3PM.

Q_t = (1 - beta_t) I + beta_t 1 pi^T, so Qbar_t = abar_t I + (1 - abar_t) 1 pi^T with abar_t = prod_(s<=t) (1 - beta_s)
and Q_(s->t) the same with abar_t / abar_s (Austin et al. 2021, appendix A.2.1-A.2.2; the products commute because
pi^T 1 = 1). Everything is O(K) per token, no K x K table, so the vocabulary may be large. The continuous-time masked
process (masked.py) is the same kernel with abar = alpha(t).
"""

from __future__ import annotations

from abc import abstractmethod

import torch

from .process import CategoricalProcess
from .mutual_info import kernel_betas
from .schedules import d3pm_betas

Tensor = torch.Tensor


def _col(v: Tensor) -> Tensor:
    """(B,) per-sample scalar -> (B, 1, 1), to broadcast over (B, L, K)."""
    return v[:, None, None]


class InterpolatingProcess(CategoricalProcess):
    """Qbar_t = abar(t) I + (1 - abar(t)) 1 pi^T for a decreasing abar with abar(0) = 1."""

    pi: Tensor  # (K,) float64 stationary distribution

    @abstractmethod
    def alpha_bar(self, t: Tensor) -> Tensor:
        """abar(t): the probability that a token has not yet been resampled from pi, (B,) -> (B,) float64."""

    def ratio(self, s: Tensor, t: Tensor) -> Tensor:
        """abar(t) / abar(s), the keep-probability of Q_(s->t) (0 where abar(s) = 0)."""
        a_s, a_t = self.alpha_bar(s), self.alpha_bar(t)
        return torch.where(a_s > 0, a_t / a_s.clamp(min=torch.finfo(torch.float64).tiny), torch.zeros_like(a_t))

    def forward(self, p: Tensor, s: Tensor, t: Tensor) -> Tensor:
        """p Q_(s->t) = r p + (1 - r) (sum p) pi, r = abar(t) / abar(s)."""
        r = _col(self.ratio(s, t).to(p.device))
        pi = self.pi.to(p.device)
        return r * p.double() + (1 - r) * p.double().sum(-1, keepdim=True) * pi

    def likelihood(self, x_t: Tensor, s: Tensor, t: Tensor) -> Tensor:
        """Q_(s->t)[j, x_t] = r [j = x_t] + (1 - r) pi[x_t]."""
        r = _col(self.ratio(s, t).to(x_t.device))
        pi_xt = self.pi.to(x_t.device)[x_t][..., None]  # (B, L, 1)
        return r * self.one_hot(x_t) + (1 - r) * pi_xt

    def matrix(self, s: float, t: float) -> Tensor:
        """r I + (1 - r) 1 pi^T for scalar times."""
        r = self.ratio(torch.tensor([float(s)], dtype=torch.float64), torch.tensor([float(t)], dtype=torch.float64))
        eye = torch.eye(self.num_classes, dtype=torch.float64)
        return r * eye + (1 - r) * self.pi[None, :].expand(self.num_classes, -1)

    def prior_probs(self) -> Tensor:
        return self.pi


class DiscreteInterpolating(InterpolatingProcess):
    """A discrete-time interpolating kernel: T steps and a beta table (T + 1,) with beta_0 = 0."""

    def __init__(self, num_classes: int, pi: Tensor, T: int, schedule: str, betas: Tensor | None = None,
                 **schedule_options: float):
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.num_classes, self.num_steps, self.schedule = num_classes, T, schedule
        self.pi = pi.double()
        # (T + 1,) with beta_0 = 0: the named table, or one a subclass solved for (mutual_info.kernel_betas)
        self.betas = d3pm_betas(schedule, T, **schedule_options) if betas is None else betas.double()
        self.alpha_bars = torch.cumprod(1 - self.betas, dim=0)  # (T + 1,), abar_0 = 1

    def alpha_bar(self, t: Tensor) -> Tensor:
        """abar_t from the table, t rounded to the nearest integer step."""
        idx = torch.as_tensor(t).round().long().clamp(0, self.num_steps)
        return self.alpha_bars.to(idx.device)[idx]


class Uniform(DiscreteInterpolating):
    """Uniform D3PM (multinomial diffusion, Hoogeboom et al. 2021): pi = 1 / K (Austin et al. 2021, appendix A.2.1);
    schedule "mutual_info" is solved against the data marginal `marginal` (K,) (None: uniform; mutual_info.py)."""

    def __init__(self, num_classes: int, T: int = 1000, schedule: str = "cosine", marginal: Tensor | None = None,
                 **schedule_options: float):
        pi = torch.full((num_classes,), 1.0 / num_classes, dtype=torch.float64)
        eye = torch.eye(num_classes, dtype=torch.float64)
        betas = kernel_betas(schedule, T, num_classes, lambda b: (1 - b) * eye + b * pi, marginal,
                             **schedule_options)
        super().__init__(num_classes, pi, T, schedule, betas=betas)


class Absorbing(DiscreteInterpolating):
    """Absorbing-state D3PM: pi = e_[MASK], [MASK] the last of vocab_size + 1 classes (Austin et al. 2021, A.2.2).

    With the mutual-information schedule (the default) abar_t = 1 - t / T and x_T is all [MASK].
    """

    def __init__(self, vocab_size: int, T: int = 1000, schedule: str = "mutual_info", **schedule_options: float):
        pi = torch.zeros(vocab_size + 1, dtype=torch.float64)
        pi[vocab_size] = 1.0
        super().__init__(vocab_size + 1, pi, T, schedule, **schedule_options)
        self.mask_id = vocab_size
