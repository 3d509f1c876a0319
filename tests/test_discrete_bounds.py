"""Bounds of a model that knows the data: the exact p(x0 | x_t) of a distribution on 3^2 sequences, by enumeration.

The continuous-time masked bound of the exact denoiser is -log p(x0) for every sequence; the discrete D3PM bound
approaches it as T grows (its factorised reverse step loses only what two tokens revealed at once share).
"""

import math

import pytest
import torch

from torchdiffusion.discrete import (Absorbing, DiscretizedGaussian, ExactDenoiser, MaskedDiffusion, NearestNeighbour,
                                     SequenceDistribution, Uniform, all_sequences, cross_entropy, d3pm_bound,
                                     d3pm_loss, enumerated_d3pm_bound, enumerated_masked_bound, masked_loss,
                                     masked_terms, step_terms, subs_logits)

V, L = 3, 2


@pytest.fixture(scope="module")
def data() -> SequenceDistribution:
    g = torch.Generator().manual_seed(1)
    seqs = all_sequences(V, L)
    probs = torch.rand(len(seqs), generator=g, dtype=torch.float64) ** 2  # correlated positions, no zero entry
    return SequenceDistribution(seqs, probs)


def expected(data: SequenceDistribution, per_sequence: torch.Tensor) -> float:
    return float((data.probs * per_sequence).sum())


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_masked_bound_of_the_exact_denoiser_is_minus_log_p_per_sequence(data, schedule):
    den = ExactDenoiser(data, MaskedDiffusion(V, schedule))
    bound = enumerated_masked_bound(den, data.sequences, nodes=64)
    torch.testing.assert_close(bound, -data.probs.log(), rtol=0, atol=1e-9)
    assert abs(expected(data, bound) - data.entropy()) < 1e-9


def test_absorbing_d3pm_bound_of_the_exact_denoiser_tends_to_the_entropy(data):
    """Mutual-information schedule, L = 2: both tokens are revealed at the same reverse step with probability 1 / T,
    and only then does the factorised p(x_(t-1) | x_t) lose their mutual information I, so the bound is H + I / T;
    at T = 1 it is the sum of the positions' marginal entropies."""
    H = data.entropy()
    marginals = float(data.marginal_entropies(V + 1).sum())
    info = marginals - H
    assert info > 0.05
    for T in (1, 2, 10, 100):
        den = ExactDenoiser(data, Absorbing(V, T=T))
        bound = expected(data, enumerated_d3pm_bound(den, data.sequences))
        assert bound == pytest.approx(H + info / T, abs=1e-9), T
    assert expected(data, enumerated_d3pm_bound(ExactDenoiser(data, Absorbing(V, T=1)), data.sequences)) == \
        pytest.approx(marginals, abs=1e-9)


KERNELS = {  # a discretised Gaussian with beta ~ 1 / T barely moves (it is no semigroup), so it has fixed betas
    "uniform": lambda T: Uniform(V, T=T),
    "gaussian": lambda T: DiscretizedGaussian(V, T=T, beta_start=0.05, beta_end=2.0),
    "nearest_neighbour": lambda T: NearestNeighbour(V, T=T, beta_start=0.5 / T, beta_end=20.0 / T),  # fixed total
}


@pytest.mark.parametrize("name", list(KERNELS))
def test_d3pm_bound_of_the_exact_denoiser_is_above_the_entropy(data, name):
    for T in (1, 20):
        bound = expected(data, enumerated_d3pm_bound(ExactDenoiser(data, KERNELS[name](T)), data.sequences))
        assert bound > data.entropy()  # E[-log p_model(x0)] >= H (Gibbs), and the bound is above it


@pytest.mark.parametrize("name", ["uniform", "nearest_neighbour"])
def test_d3pm_bound_of_the_exact_denoiser_closes_with_more_steps(data, name):
    """The same corruption in more, smaller steps: the factorised reverse step loses less (about 1 / T)."""
    gaps = [expected(data, enumerated_d3pm_bound(ExactDenoiser(data, KERNELS[name](T)), data.sequences))
            - data.entropy() for T in (10, 50, 250)]
    assert gaps[0] > gaps[1] > gaps[2] > 0
    assert gaps[2] < 0.25 * gaps[0]


def test_monte_carlo_estimators_match_the_enumerated_bounds(data):
    g = torch.Generator().manual_seed(0)
    x0 = data.sample(4000, g)
    se = lambda v: float(v.std()) / math.sqrt(len(v))  # noqa: E731
    den = ExactDenoiser(data, Absorbing(V, T=20))
    exact = expected(data, enumerated_d3pm_bound(den, data.sequences))
    one_step = d3pm_loss(den, x0, generator=g)
    assert abs(float(one_step.mean()) - exact) < 4 * se(one_step)
    full = d3pm_bound(den, x0[:1000], generator=g)
    assert abs(float(full.mean()) - exact) < 4 * se(full) and se(full) < se(one_step)
    masked = masked_loss(ExactDenoiser(data, MaskedDiffusion(V, "cosine")), x0, generator=g)
    assert abs(float(masked.mean()) - data.entropy()) < 4 * se(masked)


def test_hybrid_loss_adds_the_weighted_cross_entropy(data):
    process = Uniform(V, T=10)
    logits_table = torch.randn(V, V, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    class Toy:  # a time-dependent but deterministic stand-in for a network
        def __init__(self):
            self.process, self.time_independent = process, False

        def __call__(self, x_t, t):
            return logits_table[x_t] * (1 + t[:, None, None] / 10)

    x0 = data.sample(64, torch.Generator().manual_seed(4))
    t = torch.randint(1, 11, (64,)).double()
    plain = d3pm_loss(Toy(), x0, generator=torch.Generator().manual_seed(5), t=t)
    hybrid = d3pm_loss(Toy(), x0, generator=torch.Generator().manual_seed(5), t=t, hybrid_weight=0.01)
    x_t = process.sample_marginal(x0, t, torch.Generator().manual_seed(5))
    ce = cross_entropy(process, Toy()(x_t, t), x0)
    torch.testing.assert_close(hybrid, plain + 10 * 0.01 * ce)  # T lambda CE: the auxiliary term summed over t
    torch.testing.assert_close(plain, process.prior_kl(x0) + 10 * step_terms(process, Toy()(x_t, t), x0, x_t, t))
    assert (ce > 0).all() and (plain > 0).all()


def test_subs_and_the_masked_terms():
    K, m = V + 1, V
    logits = torch.randn(2, 4, K, generator=torch.Generator().manual_seed(0), requires_grad=True)
    x_t = torch.tensor([[0, m, 2, m], [m, m, m, 1]])
    x0 = torch.tensor([[0, 1, 2, 2], [0, 2, 1, 1]])
    log_p = subs_logits(logits, x_t, m)
    probs = log_p.exp()
    assert probs[..., m].max() == 0 and torch.allclose(probs.sum(-1), torch.ones(2, 4))  # no mass on [MASK]
    assert probs[0, 0, 0] == 1 and probs[0, 2, 2] == 1 and probs[1, 3, 1] == 1  # unmasked tokens carry over
    process = MaskedDiffusion(V)
    t = torch.tensor([0.5, 0.25], dtype=torch.float64)
    terms = masked_terms(process, log_p, x0, x_t, t)
    nll = -log_p.gather(-1, x0[..., None])[..., 0]
    torch.testing.assert_close(terms, torch.stack([2 * (nll[0, 1] + nll[0, 3]), 4 * nll[1, :3].sum()]).double())
    terms.sum().backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[0, 0].abs().max() == 0  # no signal from unmasked
    # t = 0 (nothing masked, weight infinite) is zero, not NaN
    zero = masked_terms(process, log_p, x0, x0, torch.zeros(2, dtype=torch.float64))
    assert torch.equal(zero, torch.zeros(2, dtype=torch.float64))


def test_antithetic_times_keep_the_masked_loss_unbiased_and_cut_its_variance(data):
    """The trainer's masked loss draws t for a batch as one uniform shifted by i / B (Kingma et al. 2021's
    low-discrepancy sampler, as MDLM): on a fixed, imperfect model (the exact denoiser of the wrong distribution) the
    batch mean stays an unbiased estimate of the enumerated bound, with a fraction of independent draws' variance."""
    process = MaskedDiffusion(V, "linear")
    model = ExactDenoiser(SequenceDistribution(data.sequences, data.probs.flip(0)), process)
    x0 = data.sequences.repeat(2, 1)  # (18, L): every sequence twice
    truth = float(enumerated_masked_bound(model, x0).mean())
    assert truth > data.entropy() + 0.1  # an imperfect model: the bound is strictly above the entropy
    g = torch.Generator().manual_seed(11)
    spread = {}
    for antithetic in (True, False):
        est = torch.stack([masked_loss(model, x0, generator=g, antithetic=antithetic).mean() for _ in range(600)])
        se = float(est.std()) / math.sqrt(len(est))
        assert abs(float(est.mean()) - truth) < 4 * se, (antithetic, float(est.mean()), truth, se)
        spread[antithetic] = float(est.var())
    assert spread[True] < 0.5 * spread[False], spread
