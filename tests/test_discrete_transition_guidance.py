"""Guidance of the reverse transition (Schiff et al. 2024, D-CFG) against brute force: on two classes of sequences
over 3 tokens, the guided one-step reverse distribution equals p(x_s^n | x_t, c)^g p(x_s^n | x_t)^(1 - g) / Z with
both exact reverse transitions computed here by loops over every (x0, x_s) pair of sequences through the forward
chain x0 -> x_s -> x_t (no reverse-step code of the library); g = 1 is the conditional step bit for bit; under an
absorbing kernel the revealed tokens follow the x0 tilt; the sampler steps through it; the CLI takes the mode."""

from __future__ import annotations

import itertools

import pytest
import torch

from torchdiffusion.discrete import (Absorbing, ConditionalExactDenoiser, DiscretizedGaussian, GuidedDenoiser,
                                     MaskedDiffusion, SequenceDistribution, TransitionGuidedDenoiser, Uniform,
                                     all_sequences, ancestral, guided_denoiser)
from torchdiffusion.discrete.generate import generate_tokens
from torchdiffusion.discrete.process import sample_categorical

from test_discrete_guidance import tilted, tiny_conditional

V, L = 3, 2
PROCESSES = {
    "uniform": lambda: Uniform(V, T=10),
    "absorbing": lambda: Absorbing(V, T=10),
    "gaussian": lambda: DiscretizedGaussian(V, T=10, beta_start=0.02, beta_end=1.0),
    "masked": lambda: MaskedDiffusion(V, "linear"),
}
STEPS = {"masked": [(0.3, 0.8), (0.0, 0.5), (0.6, 0.65)], "default": [(2.0, 7.0), (0.0, 3.0), (6.0, 7.0)]}


@pytest.fixture(scope="module")
def classes() -> tuple[list[SequenceDistribution], torch.Tensor]:
    """Two classes with different distributions over all 9 sequences, class prior (0.3, 0.7)."""
    g = torch.Generator().manual_seed(11)
    seqs = all_sequences(V, L)
    dists = [SequenceDistribution(seqs, torch.rand(len(seqs), generator=g, dtype=torch.float64) ** 3 + 0.01)
             for _ in range(2)]
    return dists, torch.tensor([0.3, 0.7], dtype=torch.float64)


def brute_force_reverse(process, weights: dict[tuple[int, ...], float], x_t: tuple[int, ...], s: float,
                        t: float) -> torch.Tensor:
    """p(x_s^n = k | x_t) (L, K) of data weighted by p(x0): the joint p(x0) q(x_s | x0) q(x_t | x_s) of the forward
    chain summed over every sequence x0 and x_s by loops, matrices read entry by entry."""
    Qbar_s, Q_st = process.marginal_matrix(s), process.matrix(s, t)
    K = process.num_classes
    out = torch.zeros(L, K, dtype=torch.float64)
    for x0, w in weights.items():
        for x_s in itertools.product(range(K), repeat=L):
            p = w
            for n in range(L):
                p *= float(Qbar_s[x0[n], x_s[n]]) * float(Q_st[x_s[n], x_t[n]])
            for n in range(L):
                out[n, x_s[n]] += p
    return out / out.sum(-1, keepdim=True)


def step(guided, x_t: torch.Tensor, s: float, t: float, c: int) -> torch.Tensor:
    """The guided one-step reverse log-probabilities (B, L, K) at x_t (B, L) under label c."""
    tt = torch.full((len(x_t),), t, dtype=torch.float64)
    prediction = guided(x_t, tt, class_labels=torch.full((len(x_t),), c))
    return guided.reverse_log_probs(x_t, prediction, torch.full_like(tt, s), tt)


@pytest.mark.parametrize("name", list(PROCESSES))
@pytest.mark.parametrize("scale", [0.0, 1.0, 3.0, -0.5])
def test_the_guided_reverse_step_is_the_tilted_product_of_brute_force_reverse_steps(classes, name, scale):
    dists, prior = classes
    process = PROCESSES[name]()
    guided = TransitionGuidedDenoiser(ConditionalExactDenoiser(dists, prior, process), scale)
    weights_c = [{tuple(x.tolist()): float(p) for x, p in zip(d.sequences, d.probs)} for d in dists]
    weights_u = {k: sum(float(prior[c]) * weights_c[c][k] for c in range(2)) for k in weights_c[0]}
    states = list(itertools.product(range(process.num_classes), repeat=L))  # [MASK] included where there is one
    checked = 0
    for (s, t), c in itertools.product(STEPS.get(name, STEPS["default"]), (0, 1)):
        got = step(guided, torch.tensor(states), s, t, c).exp()
        for i, state in enumerate(states):
            p_c = brute_force_reverse(process, weights_c[c], state, s, t)
            p_u = brute_force_reverse(process, weights_u, state, s, t)
            if not torch.isfinite(p_c).all():  # x_t unreachable from the data: nothing to compare
                continue
            assert torch.allclose(got[i], tilted(p_c, p_u, scale), atol=1e-6), (state, s, t, c)
            checked += 1
    assert checked >= len(states) * 3  # most states are reachable; the comparison is not vacuous


@pytest.mark.parametrize("name", list(PROCESSES))
def test_scale_one_is_the_unguided_conditional_step_exactly(classes, name):
    dists, prior = classes
    process = PROCESSES[name]()
    exact = ConditionalExactDenoiser(dists, prior, process)
    x_t = all_sequences(process.num_classes, L)
    s, t = STEPS.get(name, STEPS["default"])[0]
    tt = torch.full((len(x_t),), t, dtype=torch.float64)
    labels = torch.arange(len(x_t)) % 2
    want = process.reverse_log_probs(x_t, exact(x_t, tt, class_labels=labels), torch.full_like(tt, s), tt)
    guided = TransitionGuidedDenoiser(exact, 1.0)
    got = guided.reverse_log_probs(x_t, guided(x_t, tt, class_labels=labels), torch.full_like(tt, s), tt)
    assert torch.equal(got, want)


def test_on_a_uniform_kernel_the_transition_tilt_is_not_the_x0_tilt(classes):
    """The two modes are different distributions for a kernel that can move a revealed token."""
    dists, prior = classes
    process = Uniform(V, T=10)
    exact = ConditionalExactDenoiser(dists, prior, process)
    x_t = all_sequences(V, L)
    tt = torch.full((len(x_t),), 7.0, dtype=torch.float64)
    labels = torch.zeros(len(x_t), dtype=torch.long)
    via_x0 = process.reverse_log_probs(x_t, GuidedDenoiser(exact, 3.0)(x_t, tt, class_labels=labels),
                                       torch.full_like(tt, 2.0), tt).exp()
    via_step = step(TransitionGuidedDenoiser(exact, 3.0), x_t, 2.0, 7.0, 0).exp()
    assert (via_x0 - via_step).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["absorbing", "masked"])
def test_under_an_absorbing_kernel_revealed_tokens_follow_the_x0_tilt(classes, name):
    """A [MASK] is revealed at another rate, but a revealed token is drawn from the same tilted p(x0 | x_t, c)."""
    dists, prior = classes
    process = PROCESSES[name]()
    exact = ConditionalExactDenoiser(dists, prior, process)
    s, t = STEPS.get(name, STEPS["default"])[0]
    x_t = torch.tensor([[V, V], [V, 1], [2, V]])  # at least one [MASK] per row
    tt = torch.full((len(x_t),), t, dtype=torch.float64)
    labels = torch.tensor([0, 1, 0])
    via_x0 = process.reverse_log_probs(x_t, GuidedDenoiser(exact, 3.0)(x_t, tt, class_labels=labels),
                                       torch.full_like(tt, s), tt).exp()
    tt_s = torch.full_like(tt, s)
    guided = TransitionGuidedDenoiser(exact, 3.0)
    via_step = guided.reverse_log_probs(x_t, guided(x_t, tt, class_labels=labels), tt_s, tt).exp()
    masked = x_t == V
    a, b = via_x0[masked][:, :V], via_step[masked][:, :V]
    assert torch.allclose(a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True), atol=1e-9)
    assert not torch.allclose(via_x0[masked][:, V], via_step[masked][:, V], atol=1e-4)  # the stay-masked mass


def test_the_sampler_steps_through_the_guided_transition(classes):
    """ancestral with a TransitionGuidedDenoiser draws from its reverse step: the same ids as the loop written out,
    with the cache and without; at g = 1 the same ids as the conditional denoiser."""
    dists, prior = classes
    process = Uniform(V, T=10)
    exact = ConditionalExactDenoiser(dists, prior, process)
    guided = TransitionGuidedDenoiser(exact, 2.5)
    labels = torch.arange(32) % 2
    x_T = process.sample_prior((32, L), torch.Generator().manual_seed(1))
    got = ancestral(guided, x_T, 5, generator=torch.Generator().manual_seed(0), class_labels=labels)
    g, x = torch.Generator().manual_seed(0), x_T.clone()
    for t, s in zip([10.0, 8.0, 6.0, 4.0, 2.0], [8.0, 6.0, 4.0, 2.0, 0.0]):
        tt = torch.full((32,), t, dtype=torch.float64)
        x = sample_categorical(guided.reverse_log_probs(x, guided(x, tt, class_labels=labels),
                                                        torch.full_like(tt, s), tt), g)
    assert torch.equal(got, x)
    one = ancestral(TransitionGuidedDenoiser(exact, 1.0), x_T, 5, generator=torch.Generator().manual_seed(0),
                    class_labels=labels)
    assert torch.equal(one, ancestral(exact, x_T, 5, generator=torch.Generator().manual_seed(0), class_labels=labels))
    masked = MaskedDiffusion(V, "linear")
    cached = TransitionGuidedDenoiser(ConditionalExactDenoiser(dists, prior, masked), 2.0)
    x_T = masked.sample_prior((32, L))
    a = ancestral(cached, x_T, 8, generator=torch.Generator().manual_seed(0), cache=True, class_labels=labels)
    b = ancestral(cached, x_T, 8, generator=torch.Generator().manual_seed(0), cache=False, class_labels=labels)
    assert torch.equal(a, b)


def test_generate_tokens_takes_the_mode_and_refuses_an_unknown_one():
    model = tiny_conditional()
    labels = torch.tensor([0, 1, 2, 0])
    ids, stats = generate_tokens(model, 4, 4, steps=3, class_labels=labels, guidance_scale=2.0,
                                 guidance_mode="transition")
    assert ids.shape == (4, 4) and int(ids.max()) < V
    with pytest.raises(ValueError, match="guidance mode must be one of x0, transition"):
        generate_tokens(model, 4, 4, steps=3, class_labels=labels, guidance_scale=2.0, guidance_mode="x_s")
    with pytest.raises(ValueError, match="needs class labels"):
        TransitionGuidedDenoiser(model, 2.0)(torch.full((1, 4), V), torch.full((1,), 0.5))
    with pytest.raises(ValueError, match="finite"):
        guided_denoiser(model, float("nan"), "transition")
