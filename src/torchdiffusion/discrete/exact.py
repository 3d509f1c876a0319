"""Ground truth for the discrete core: a data distribution over a small set of sequences and its exact denoiser.

For data p(x0) on N sequences of length L, the exact p(x0 | x_t) ∝ p(x0) prod_n q(x_t^n | x0^n) is a posterior
over the N sequences, and its per-position marginals are what a perfect network returns. Enumeration is cheap for a
tiny vocabulary and length (K = 3, L = 2 has 9 sequences), which makes every bound and sampler checkable exactly.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from .bound import step_terms
from .masked import MaskedDiffusion, masked_terms, subs_logits
from .process import CategoricalProcess, safe_log, sample_categorical

Tensor = torch.Tensor


def all_sequences(vocab_size: int, length: int) -> Tensor:
    """Every sequence of `length` ids in range(vocab_size), (vocab_size ** length, length) long, lexicographic."""
    return torch.tensor(list(itertools.product(range(vocab_size), repeat=length)), dtype=torch.long)


class SequenceDistribution:
    """p(x0) = probs[i] on sequences[i]: sequences (N, L) long, probs (N,) summing to one."""

    def __init__(self, sequences: Tensor, probs: Tensor):
        if sequences.ndim != 2 or probs.shape != sequences.shape[:1]:
            raise ValueError(f"need sequences (N, L) and probs (N,), got {tuple(sequences.shape)}, "
                             f"{tuple(probs.shape)}")
        self.sequences, self.probs = sequences.long(), probs.double() / probs.double().sum()

    @property
    def length(self) -> int:
        return self.sequences.shape[1]

    def entropy(self) -> float:
        """H(p) in nats, the best possible expected negative log-likelihood per sequence."""
        p = self.probs[self.probs > 0]
        return float(-(p * p.log()).sum())

    def marginal_entropies(self, num_classes: int) -> Tensor:
        """(L,) entropies of each position's marginal, in nats."""
        onehot = torch.nn.functional.one_hot(self.sequences, num_classes).double()  # (N, L, K)
        marg = torch.einsum("i,ilk->lk", self.probs, onehot)
        return -(marg * safe_log(marg).clamp(min=-1e4)).sum(-1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n sequences drawn from p -> (n, L) long."""
        idx = sample_categorical(safe_log(self.probs).expand(n, -1), generator)
        return self.sequences[idx]

    def index_of(self, x: Tensor) -> Tensor:
        """The row of each sequence of x (B, L) in `sequences`, -1 where absent -> (B,)."""
        match = (x[:, None, :] == self.sequences[None]).all(-1)  # (B, N)
        return torch.where(match.any(1), match.long().argmax(1), torch.full_like(match[:, 0], -1, dtype=torch.long))


class ExactDenoiser:
    """The exact p(x0^n | x_t) of a SequenceDistribution under a CategoricalProcess, as logits (log-probabilities)."""

    def __init__(self, data: SequenceDistribution, process: CategoricalProcess):
        self.data, self.process = data, process
        self.time_independent = process.time_independent_posterior

    def posterior(self, x_t: Tensor, t: Tensor) -> Tensor:
        """p(x0 = sequences[i] | x_t) for every i: x_t (B, L), t (B,) -> (B, N) float64."""
        log_lik = safe_log(self.process.likelihood(x_t, torch.zeros_like(t), t))  # (B, L, K) log q(x_t^n | x0^n = k)
        seqs = self.data.sequences.to(x_t.device)  # (N, L)
        positions = torch.arange(self.data.length, device=x_t.device)
        per_seq = log_lik[:, positions[None, :], seqs].sum(-1)  # (B, N): sum_n log q(x_t^n | x0^n = seqs[i, n])
        log_post = per_seq + safe_log(self.data.probs.to(x_t.device))
        return torch.softmax(log_post, dim=-1)

    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor:
        """log p(x0^n = k | x_t) (B, L, K) float64; -inf where impossible."""
        t = torch.as_tensor(t, dtype=torch.float64, device=x_t.device)
        post = self.posterior(x_t, t)
        onehot = torch.nn.functional.one_hot(self.data.sequences.to(x_t.device), self.process.num_classes).double()
        return safe_log(torch.einsum("bi,ilk->blk", post, onehot))


# ---------------------------------------------------------------- bounds by enumeration (no Monte Carlo)

def _pairs(process: CategoricalProcess, x0: Tensor, times: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Every (x0 row i, x_t, t) with q(x_t | x0) > 0: rows (R,), x_t (R, L), t (R,), q(x_t | x0) (R,)."""
    N, L = x0.shape
    xts = all_sequences(process.num_classes, L)  # (M, L): every state of the sequence
    M, S = len(xts), len(times)
    i = torch.arange(N).repeat_interleave(M * S)
    xt = xts.repeat_interleave(S, 0).repeat(N, 1)
    t = times.repeat(N * M)
    q = process.marginal_probs(x0[i], t).gather(-1, xt[..., None])[..., 0].prod(-1)
    keep = q > 0
    return i[keep], xt[keep], t[keep], q[keep]


@torch.no_grad()
def enumerated_d3pm_bound(denoiser, x0: Tensor, chunk: int = 65536) -> Tensor:
    """The D3PM bound L_T + sum_t E_q(x_t | x0) L_(t-1) of each sequence x0 (N, L), every expectation an exact sum
    over the K^L states x_t (tiny K and L only) -> (N,) nats."""
    process: CategoricalProcess = denoiser.process
    steps = torch.arange(1, process.num_steps + 1, dtype=torch.float64)
    i, xt, t, q = _pairs(process, x0, steps)
    terms = torch.cat([step_terms(process, denoiser(xt[a:a + chunk], t[a:a + chunk]), x0[i[a:a + chunk]],
                                  xt[a:a + chunk], t[a:a + chunk]) for a in range(0, len(i), chunk)])
    return process.prior_kl(x0) + torch.zeros(len(x0), dtype=torch.float64).index_add(0, i, q * terms)


@torch.no_grad()
def enumerated_masked_bound(denoiser, x0: Tensor, nodes: int = 64) -> Tensor:
    """The continuous-time masked bound of each sequence x0 (N, L): Gauss-Legendre quadrature in t (`nodes` points,
    exact for polynomial integrands such as the linear schedule's) and an exact sum over mask patterns -> (N,) nats."""
    process: MaskedDiffusion = denoiser.process
    u, w = np.polynomial.legendre.leggauss(nodes)
    times, weights = torch.tensor((u + 1) / 2), torch.tensor(w / 2)
    i, xt, t, q = _pairs(process, x0, times)
    log_probs = subs_logits(denoiser(xt, t).double(), xt, process.mask_id)
    terms = masked_terms(process, log_probs, x0[i], xt, t)
    w_t = weights[torch.searchsorted(times, t)]
    return torch.zeros(len(x0), dtype=torch.float64).index_add(0, i, w_t * q * terms)


class ConditionalExactDenoiser:
    """The exact p(x0^n | x_t, c) of class-conditional data p(x0 | c) with class prior p(c), and with the null label
    (c = num_classes, or no labels) the exact unconditional p(x0^n | x_t) of the mixture sum_c p(c) p(x0 | c): the
    ideal network trained with label dropout, the ground truth of classifier-free guidance."""

    def __init__(self, classes: list[SequenceDistribution], class_probs: Tensor, process: CategoricalProcess):
        if len(classes) != len(class_probs) or not classes:
            raise ValueError(f"need one distribution per class, got {len(classes)} and {len(class_probs)} priors")
        self.process, self.num_classes = process, len(classes)
        self.time_independent = process.time_independent_posterior
        prior = class_probs.double() / class_probs.double().sum()
        mixture = SequenceDistribution(torch.cat([d.sequences for d in classes]),
                                       torch.cat([p * d.probs for p, d in zip(prior, classes)]))
        self.exact = [ExactDenoiser(d, process) for d in classes] + [ExactDenoiser(mixture, process)]

    def __call__(self, x_t: Tensor, t: Tensor, class_labels: Tensor | None = None) -> Tensor:
        """log p(x0^n = k | x_t, c) (B, L, K) float64, row b under class_labels[b] (null: the mixture)."""
        t = torch.as_tensor(t, dtype=torch.float64, device=x_t.device)
        if class_labels is None:
            return self.exact[-1](x_t, t)
        out = torch.empty(*x_t.shape, self.process.num_classes, dtype=torch.float64, device=x_t.device)
        for c in class_labels.unique().tolist():
            rows = class_labels == c
            out[rows] = self.exact[c](x_t[rows], t[rows])
        return out
