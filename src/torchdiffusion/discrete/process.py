"""Categorical forward processes over K classes: the contract every D3PM kernel and masked process satisfies.

A token x is one of K classes; a distribution over them is a row vector and the forward process multiplies it on
the right by transition matrices, q(x_t | x_s) = Cat(x_t; x_s Q_(s->t)) (Austin et al. 2021, eq. 1), with
Qbar_t = Q_(0->t) = Q_1 ... Q_t (eq. 2). Time runs from t = 0 (data) to t_max (T steps, or 1 in continuous time).
Sequences (B, L) of integer ids are processed position by position; every time argument is per sample, (B,).

A subclass provides two primitives, `forward(p, s, t) = p Q_(s->t)` and `likelihood(x_t, s, t) = Q_(s->t)[:, x_t]`,
plus `matrix(s, t)` and `prior_probs()`; posteriors, the x0-parameterised reverse step, the prior KL and sampling are
built here from them, in float64 and in log space where probabilities underflow.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F

from ..rng import rand

Tensor = torch.Tensor

LOG_FLOOR = -1e4  # log-probabilities below this are zero for every purpose; keeps 0 * log 0 terms finite


def safe_log(p: Tensor) -> Tensor:
    """log p with log 0 = -inf (no warnings, no NaN for p = 0)."""
    return torch.where(p > 0, p.clamp(min=torch.finfo(p.dtype).tiny).log(), torch.full_like(p, -torch.inf))


def categorical_kl(log_q: Tensor, log_p: Tensor) -> Tensor:
    """KL(q || p) over the last axis, with 0 log 0 = 0 and log p floored at LOG_FLOOR (an impossible state of p)."""
    q = log_q.exp()
    terms = q * (log_q - log_p.clamp(min=LOG_FLOOR))
    return torch.where(q > 0, terms, torch.zeros_like(terms)).sum(-1)


def sample_categorical(log_probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One draw per row of (..., K) log-probabilities by the Gumbel-max trick, from float64 uniforms (float32 Gumbel
    noise truncates the tail and lowers the temperature, Zheng et al. 2024). -> (...) long."""
    u = rand(tuple(log_probs.shape), generator, dtype=torch.float64, device=log_probs.device)
    gumbel = -torch.log(-torch.log(u.clamp(min=torch.finfo(torch.float64).tiny)))
    return (log_probs.double() + gumbel).argmax(-1)


def as_time(t: Tensor | float, batch: int, device: torch.device | str = "cpu") -> Tensor:
    """A scalar or (B,) time -> (B,) float64 on device."""
    t = torch.as_tensor(t, dtype=torch.float64, device=device)
    return t.expand(batch).clone() if t.ndim == 0 else t.to(torch.float64)


class CategoricalProcess(ABC):
    """q(x_t | x_s) = Cat(x_s Q_(s->t)) over K classes, factorised over the positions of a sequence (B, L).

    num_classes: K (an absorbing process counts its [MASK] among them, as the last class).
    mask_id: the absorbing [MASK] class, or None; never a data class, so p(x0 | x_t) gives it no mass.
    num_steps: T for a discrete-time process (times are integers 0..T), None in continuous time on [0, 1].
    """

    num_classes: int
    mask_id: int | None = None
    num_steps: int | None = None

    @property
    def t_max(self) -> float:
        """The last time: T, or 1 in continuous time."""
        return float(self.num_steps) if self.num_steps is not None else 1.0

    @property
    def time_independent_posterior(self) -> bool:
        """Whether p(x0 | x_t) depends on x_t only, not on t (absorbing kernels: a mask says nothing about t)."""
        return self.mask_id is not None

    # ------------------------------------------------------------ the primitives a kernel provides

    @abstractmethod
    def forward(self, p: Tensor, s: Tensor, t: Tensor) -> Tensor:
        """p Q_(s->t): distributions (B, L, K) of x_s -> of x_t; s <= t per sample, (B,) each."""

    @abstractmethod
    def likelihood(self, x_t: Tensor, s: Tensor, t: Tensor) -> Tensor:
        """q(x_t | x_s = j) for every j, i.e. the column Q_(s->t)[:, x_t]: (B, L) ids -> (B, L, K)."""

    @abstractmethod
    def matrix(self, s: float, t: float) -> Tensor:
        """The (K, K) float64 transition matrix Q_(s->t) for scalar times s <= t (rows are distributions)."""

    @abstractmethod
    def prior_probs(self) -> Tensor:
        """(K,) float64 distribution p(x_T) every token starts from when sampling (the stationary one)."""

    # ------------------------------------------------------------ matrices by name (for tests and inspection)

    def step_matrix(self, t: int) -> Tensor:
        """Q_t = Q_(t-1 -> t), the one-step matrix of a discrete-time process."""
        return self.matrix(t - 1, t)

    def marginal_matrix(self, t: float) -> Tensor:
        """Qbar_t = Q_(0 -> t)."""
        return self.matrix(0, t)

    # ------------------------------------------------------------ marginals and the prior

    def one_hot(self, x: Tensor) -> Tensor:
        """(B, L) ids -> (B, L, K) float64 one-hot rows."""
        return F.one_hot(x, self.num_classes).to(torch.float64)

    def marginal_probs(self, x0: Tensor, t: Tensor) -> Tensor:
        """q(x_t | x0) = x0 Qbar_t (Austin et al. 2021, eq. 2): (B, L) ids, t (B,) -> (B, L, K) float64."""
        return self.forward(self.one_hot(x0), torch.zeros_like(t), t)

    def sample_marginal(self, x0: Tensor, t: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """x_t ~ q(x_t | x0): (B, L) ids -> (B, L) ids."""
        return sample_categorical(safe_log(self.marginal_probs(x0, t)), generator)

    def sample_prior(self, shape: tuple[int, ...], generator: torch.Generator | None = None,
                     device: torch.device | str = "cpu") -> Tensor:
        """x_T ~ p(x_T), independently per position: shape (B, L) -> ids."""
        log_pi = safe_log(self.prior_probs()).to(device)
        return sample_categorical(log_pi.expand(*shape, self.num_classes), generator)

    def prior_kl(self, x0: Tensor) -> Tensor:
        """L_T = KL(q(x_T | x0) || p(x_T)) summed over positions (Austin et al. 2021, eq. 5's first term): (B,)."""
        t = as_time(self.t_max, x0.shape[0], x0.device)
        log_prior = safe_log(self.prior_probs()).to(x0.device)
        return categorical_kl(safe_log(self.marginal_probs(x0, t)), log_prior.expand(*x0.shape, -1)).sum(-1)

    # ------------------------------------------------------------ posteriors and the reverse step

    def posterior_log_probs(self, x_t: Tensor, x0: Tensor, s: Tensor, t: Tensor) -> Tensor:
        """log q(x_s | x_t, x0) ∝ log (x_t Q_(s->t)^T) + log (x0 Qbar_s) (Austin et al. 2021, eq. 3) -> (B, L, K).

        x_t, x0 (B, L) ids with q(x_t | x0) > 0; s < t (B,) each.
        """
        log_joint = safe_log(self.likelihood(x_t, s, t)) + safe_log(self.marginal_probs(x0, s))
        return log_joint - torch.logsumexp(log_joint, dim=-1, keepdim=True)

    def x0_log_probs(self, logits: Tensor) -> Tensor:
        """log p(x0 | x_t) from a denoiser's logits (B, L, K), in float64, with no mass on [MASK] (not a data class)."""
        logits = logits.double()
        if self.mask_id is not None:
            logits = logits.index_fill(-1, torch.tensor([self.mask_id], device=logits.device), -torch.inf)
        return torch.log_softmax(logits, dim=-1)

    def reverse_log_probs(self, x_t: Tensor, logits: Tensor, s: Tensor, t: Tensor) -> Tensor:
        """log p(x_s | x_t) = log sum_x0 q(x_s | x_t, x0) p(x0 | x_t), the x0-parameterised reverse step -> (B, L, K).

        Austin et al. 2021 (eq. 4) mix q(x_s, x_t | x0) instead, i.e. weight p(x0 | x_t) by q(x_t | x0); the mixture
        of posteriors used here is the exact reverse step when p(x0 | x_t) is the true posterior (and then agrees with
        the hybrid loss's cross-entropy term). Written as one product, since q(x_s | x_t, x0) =
        Q_(s->t)[x_s, x_t] Qbar_s[x0, x_s] / Qbar_t[x0, x_t]:
            p(x_s | x_t) ∝ Q_(s->t)[x_s, x_t] (w Qbar_s)[x_s],   w(x0) ∝ p(x0 | x_t) / Qbar_t[x0, x_t]
        over the x0 that can reach x_t (the others carry no posterior; for [MASK] this is the SUBS carry-over of
        unmasked tokens, Sahoo et al. 2024's SUBS).
        """
        log_p0 = self.x0_log_probs(logits)  # (B, L, K)
        log_lik = safe_log(self.likelihood(x_t, torch.zeros_like(t), t))  # log q(x_t | x0 = j)
        log_w = torch.where(log_lik > -torch.inf, log_p0 - log_lik, torch.full_like(log_p0, -torch.inf))
        # a position whose p(x0 | x_t) puts all its mass on x0 that cannot reach x_t: fall back to a uniform p(x0)
        lost = torch.isneginf(torch.logsumexp(log_w, dim=-1, keepdim=True))
        log_w = torch.where(lost & (log_lik > -torch.inf), -log_lik, log_w)
        w = torch.softmax(log_w, dim=-1)  # normalised first: 1 / Qbar_t[x0, x_t] may be huge
        log_joint = safe_log(self.likelihood(x_t, s, t)) + safe_log(self.forward(w, torch.zeros_like(s), s))
        return log_joint - torch.logsumexp(log_joint, dim=-1, keepdim=True)
