"""Classifier-free guidance of discrete denoisers against brute force: on two classes of sequences over 3 tokens, the
guided p_s(x0^n | x_t, c) equals p(x0^n | x_t, c)^s p(x0^n | x_t)^(1 - s) / Z with both posteriors computed here by
loops over every sequence (Bayes' rule, no library code), for every kernel; guided sampling of one token draws the
tilted data distribution; and class-conditional token networks, the trainer and the CLI carry the labels."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from scipy.stats import chi2

from torchdiffusion.discrete import (Absorbing, ConditionalExactDenoiser, DiscretizedGaussian, GuidedDenoiser,
                                     MaskedDiffusion, NearestNeighbour, SequenceDistribution, Uniform, all_sequences,
                                     ancestral, tilted_log_probs)
from torchdiffusion.discrete.denoiser import BackboneDenoiser
from torchdiffusion.discrete.generate import generate_tokens
from torchdiffusion.nn.sequence import SequenceTransformer, SequenceTransformerConfig

V, L = 3, 2
PROCESSES = {
    "uniform": lambda: Uniform(V, T=10),
    "absorbing": lambda: Absorbing(V, T=10),
    "gaussian": lambda: DiscretizedGaussian(V, T=10, beta_start=0.02, beta_end=1.0),
    "nearest_neighbour": lambda: NearestNeighbour(V, T=10, beta_start=0.02, beta_end=1.0),
    "masked": lambda: MaskedDiffusion(V, "linear"),
}
TIMES = {"masked": [0.3, 0.8], "default": [2.0, 7.0]}


@pytest.fixture(scope="module")
def classes() -> tuple[list[SequenceDistribution], torch.Tensor]:
    """Two classes with different distributions over all 9 sequences, class prior (0.3, 0.7)."""
    g = torch.Generator().manual_seed(5)
    seqs = all_sequences(V, L)
    dists = [SequenceDistribution(seqs, torch.rand(len(seqs), generator=g, dtype=torch.float64) ** 3 + 0.01)
             for _ in range(2)]
    return dists, torch.tensor([0.3, 0.7], dtype=torch.float64)


def brute_force_posterior(process, weights: dict[tuple[int, ...], float], x_t: tuple[int, ...], t: float) -> torch.Tensor:
    """p(x0^n = k | x_t) (L, K) by Bayes' rule over every sequence x0 with its weight p(x0) (p(x0 | c) or the
    mixture): loops over sequences and positions, the forward matrix Qbar_t read entry by entry."""
    Qbar = process.marginal_matrix(t)
    K = process.num_classes
    post = torch.zeros(L, K, dtype=torch.float64)
    for x0, w in weights.items():
        lik = 1.0
        for n in range(L):
            lik *= float(Qbar[x0[n], x_t[n]])
        for n in range(L):
            post[n, x0[n]] += w * lik
    return post / post.sum(-1, keepdim=True)


def tilted(p_c: torch.Tensor, p_u: torch.Tensor, s: float) -> torch.Tensor:
    """p_c^s p_u^(1 - s), normalised per position, zero where either is zero."""
    out = torch.where((p_c > 0) & (p_u > 0), p_c.clamp(min=1e-300) ** s * p_u.clamp(min=1e-300) ** (1 - s),
                      torch.zeros_like(p_c))
    return out / out.sum(-1, keepdim=True)


@pytest.mark.parametrize("name", list(PROCESSES))
@pytest.mark.parametrize("scale", [0.0, 1.0, 3.0])
def test_guided_posterior_is_the_tilted_product_of_brute_force_posteriors(classes, name, scale):
    dists, prior = classes
    process = PROCESSES[name]()
    guided = GuidedDenoiser(ConditionalExactDenoiser(dists, prior, process), scale)
    weights_c = [{tuple(s.tolist()): float(p) for s, p in zip(d.sequences, d.probs)} for d in dists]
    weights_u = {k: sum(float(prior[c]) * weights_c[c][k] for c in range(2)) for k in weights_c[0]}
    states = list(itertools.product(range(process.num_classes), repeat=L))  # [MASK] included where there is one
    for t, c in itertools.product(TIMES.get(name, TIMES["default"]), (0, 1)):
        x_t = torch.tensor(states)
        tt = torch.full((len(states),), t, dtype=torch.float64)
        got = guided(x_t, tt, class_labels=torch.full((len(states),), c)).exp()
        for i, state in enumerate(states):
            p_c = brute_force_posterior(process, weights_c[c], state, t)
            p_u = brute_force_posterior(process, weights_u, state, t)
            if not torch.isfinite(p_c).all():  # x_t unreachable from the data: nothing to compare
                continue
            assert torch.allclose(got[i], tilted(p_c, p_u, scale), atol=1e-9), (state, t, c)


def test_scale_one_is_the_conditional_model_and_zero_the_unconditional(classes):
    dists, prior = classes
    process = Absorbing(V, T=10)
    exact = ConditionalExactDenoiser(dists, prior, process)
    x_t = all_sequences(process.num_classes, L)
    t = torch.full((len(x_t),), 6.0, dtype=torch.float64)
    labels = torch.arange(len(x_t)) % 2
    cond = process.x0_log_probs(exact(x_t, t, class_labels=labels))
    for scale, want in ((1.0, cond), (0.0, process.x0_log_probs(exact(x_t, t)))):
        got = GuidedDenoiser(exact, scale)(x_t, t, class_labels=labels)
        assert torch.allclose(got.exp(), want.exp(), atol=1e-12)


def test_tilted_log_probs_keeps_impossible_classes_impossible():
    log_c = torch.log(torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64))
    log_u = torch.log(torch.tensor([[0.2, 0.0, 0.8], [0.0, 0.5, 0.5]], dtype=torch.float64))
    out = tilted_log_probs(log_c, log_u, 3.0).exp()
    assert torch.allclose(out[0], torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))  # only class 0 is in both
    assert torch.allclose(out[1], torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))  # disjoint: the conditional
    assert torch.isfinite(tilted_log_probs(log_c, log_u, 3.0)[:, 0]).all()


@pytest.mark.parametrize("process_fn", [lambda: MaskedDiffusion(V, "linear"), lambda: Absorbing(V, T=10)])
@pytest.mark.parametrize("scale", [0.0, 2.5])
def test_guided_sampling_of_one_token_draws_the_tilted_data_distribution(process_fn, scale):
    """L = 1 under an absorbing kernel: the only reverse decision is a draw from the guided p(x0 | [MASK], c),
    which is the tilted data distribution p(x | c)^s p(x)^(1 - s) / Z exactly, at any step count."""
    p0 = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    p1 = torch.tensor([0.1, 0.3, 0.6], dtype=torch.float64)
    prior = torch.tensor([0.5, 0.5], dtype=torch.float64)
    one = torch.arange(V)[:, None]
    process = process_fn()
    exact = ConditionalExactDenoiser([SequenceDistribution(one, p0), SequenceDistribution(one, p1)], prior, process)
    target = tilted(p0[None], (0.5 * p0 + 0.5 * p1)[None], scale)[0]
    g = torch.Generator().manual_seed(3)
    n = 6000
    x = ancestral(GuidedDenoiser(exact, scale), process.sample_prior((n, 1), g), 5, generator=g,
                  class_labels=torch.zeros(n, dtype=torch.long))
    counts = torch.bincount(x[:, 0], minlength=process.num_classes).double()
    assert counts[V:].sum() == 0  # no [MASK] left
    expected = target * n
    assert float(chi2.sf(float(((counts[:V] - expected) ** 2 / expected).sum()), V - 1)) > 1e-3


def test_cached_guided_sampling_hands_each_row_its_own_label(classes):
    """The cache re-evaluates only changed rows; their labels must follow them (same samples as without cache)."""
    dists, prior = classes
    process = MaskedDiffusion(V, "linear")
    guided = GuidedDenoiser(ConditionalExactDenoiser(dists, prior, process), 2.0)
    labels = torch.arange(64) % 2
    x_T = process.sample_prior((64, L))
    a = ancestral(guided, x_T, 8, generator=torch.Generator().manual_seed(0), cache=True, class_labels=labels)
    b = ancestral(guided, x_T, 8, generator=torch.Generator().manual_seed(0), cache=False, class_labels=labels)
    assert torch.equal(a, b)


# ---------------------------------------------------------------- networks, generation, refusals

def tiny_conditional(num_classes: int = 3) -> BackboneDenoiser:
    cfg = SequenceTransformerConfig(vocab_size=V + 1, seq_len=4, hidden_dim=16, depth=1, num_heads=2,
                                    num_classes=num_classes, time_conditioning=False)
    net = SequenceTransformer(cfg)
    torch.nn.init.normal_(net.head.weight, std=1.0)
    torch.nn.init.normal_(net.final_adaLN.weight, std=1.0)
    return BackboneDenoiser(net, MaskedDiffusion(V))


def test_a_conditional_sequence_transformer_reads_its_label_and_defaults_to_null():
    model = tiny_conditional()
    x = torch.full((3, 4), V)
    t = torch.full((3,), 0.5)
    null = model(x, t, class_labels=torch.full((3,), 3))
    assert torch.equal(model(x, t), null)
    assert not torch.allclose(model(x, t, class_labels=torch.tensor([0, 1, 2])), null)
    with pytest.raises(ValueError, match=r"integers in \[0, 3\]"):
        model(x, t, class_labels=torch.tensor([0, 1, 4]))
    unconditional = BackboneDenoiser(SequenceTransformer(SequenceTransformerConfig(vocab_size=V + 1, seq_len=4,
                                                                                   hidden_dim=16, depth=1)),
                                     MaskedDiffusion(V))
    with pytest.raises(ValueError, match="num_classes is 0"):
        unconditional(x, t, class_labels=torch.tensor([0, 1, 2]))


def test_generate_tokens_with_guidance_calls_twice_per_step_and_refuses_missing_labels():
    model = tiny_conditional()
    ids, stats = generate_tokens(model, 4, 4, steps=3, class_labels=torch.tensor([0, 1, 2, 0]), guidance_scale=2.0)
    assert ids.shape == (4, 4) and int(ids.max()) < V
    with pytest.raises(ValueError, match="needs class labels"):
        generate_tokens(model, 4, 4, steps=3, guidance_scale=2.0)
    with pytest.raises(ValueError, match=r"integers in \[0, 2\]"):
        generate_tokens(model, 2, 4, steps=3, class_labels=torch.tensor([0, 5]))
