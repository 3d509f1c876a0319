"""Ancestral sampling with the exact denoiser reproduces the data distribution (chi-square test on 3^2 sequences),
and the caching sampler draws the very same samples with fewer denoiser calls."""

import pytest
import torch
from scipy.stats import chi2

from torchdiffusion.discrete import (ANCESTRAL, Absorbing, CountingDenoiser, DiscretizedGaussian, ExactDenoiser,
                                     MaskedDiffusion, NearestNeighbour, SamplerStats, SequenceDistribution, Uniform,
                                     all_sequences, ancestral, time_grid)

V, L = 3, 2


@pytest.fixture(scope="module")
def data() -> SequenceDistribution:
    g = torch.Generator().manual_seed(2)
    seqs = all_sequences(V, L)
    return SequenceDistribution(seqs, torch.rand(len(seqs), generator=g, dtype=torch.float64) + 0.2)


def chi_square_p_value(data: SequenceDistribution, x: torch.Tensor) -> float:
    idx = data.index_of(x)
    assert (idx >= 0).all(), "sampled a sequence outside the data's support (or a [MASK])"
    counts = torch.bincount(idx, minlength=len(data.probs)).double()
    exp = data.probs * len(x)
    return float(chi2.sf(float(((counts - exp) ** 2 / exp).sum()), len(exp) - 1))


PROCESSES = {
    "uniform": lambda: Uniform(V, T=40),
    "absorbing": lambda: Absorbing(V, T=40),
    "gaussian": lambda: DiscretizedGaussian(V, T=40, beta_start=0.02, beta_end=1.0),
    "nearest_neighbour": lambda: NearestNeighbour(V, T=40, beta_start=0.02, beta_end=1.0),
    "masked": lambda: MaskedDiffusion(V, "cosine"),
}


@pytest.mark.parametrize("name", list(PROCESSES))
def test_ancestral_sampling_with_the_exact_denoiser_reproduces_the_data(data, name):
    """L = 2 and 40 steps: the factorised reverse step errs by O(1 / steps) in probability, far below what 3000
    samples resolve (with few large steps the two positions' correlation is visibly lost)."""
    process = PROCESSES[name]()
    g = torch.Generator().manual_seed(0)
    x0 = ancestral(ExactDenoiser(data, process), process.sample_prior((3000, L), g), 40, generator=g)
    assert chi_square_p_value(data, x0) > 1e-3


@pytest.mark.parametrize("name", list(PROCESSES))
@pytest.mark.parametrize("steps", [1, 3, 40])
def test_a_single_token_is_sampled_exactly_at_any_step_count(name, steps):
    """L = 1 has nothing to factorise: p(x_s | x_t) is the true reverse kernel, for big steps through Q_(s->t) too,
    so the samples follow the data whatever the number of steps (up to the prior's mismatch, here < 1e-4)."""
    process = PROCESSES[name]()
    assert float(process.prior_kl(torch.arange(V)[:, None]).max()) < 1e-4
    data = SequenceDistribution(torch.arange(V)[:, None], torch.tensor([0.6, 0.1, 0.3], dtype=torch.float64))
    g = torch.Generator().manual_seed(1)
    x0 = ancestral(ExactDenoiser(data, process), process.sample_prior((20000, 1), g), steps, generator=g)
    assert chi_square_p_value(data, x0) > 1e-3


@pytest.mark.parametrize("process", [MaskedDiffusion(V), Absorbing(V, T=50)], ids=["masked", "absorbing"])
def test_caching_gives_the_same_samples_with_fewer_calls(data, process):
    x_T = process.sample_prior((32, L), torch.Generator().manual_seed(1))
    runs = {}
    for cache in (False, True):
        den, stats = CountingDenoiser(ExactDenoiser(data, process)), SamplerStats()
        x0 = ancestral(den, x_T, 50, generator=torch.Generator().manual_seed(7), cache=cache, stats=stats)
        runs[cache] = (x0, den, stats)
    (x_plain, den_plain, s_plain), (x_cached, den_cached, s_cached) = runs[False], runs[True]
    assert torch.equal(x_plain, x_cached)
    assert den_plain.calls == s_plain.calls == 50 and den_plain.rows == 50 * 32 and s_plain.cached_rows == 0
    assert den_cached.calls == s_cached.calls < 50 and den_cached.rows == s_cached.rows
    assert s_cached.calls + s_cached.cached_calls == 50 and s_cached.rows + s_cached.cached_rows == 50 * 32
    # a sequence is re-evaluated only after it changed, and each of its L tokens is unmasked once
    assert s_cached.rows <= 32 * (L + 1)
    # the default follows the denoiser: an absorbing kernel's exact p(x0 | x_t) ignores t
    stats = SamplerStats()
    x_default = ancestral(ExactDenoiser(data, process), x_T, 50, generator=torch.Generator().manual_seed(7),
                          stats=stats)
    assert torch.equal(x_default, x_plain) and stats.rows == s_cached.rows


def test_a_time_dependent_denoiser_is_not_cached_by_default(data):
    process = Uniform(V, T=20)
    den = ExactDenoiser(data, process)
    assert not den.time_independent
    stats = SamplerStats()
    ancestral(den, process.sample_prior((8, L)), 20, generator=torch.Generator().manual_seed(0), stats=stats)
    assert stats.calls == 20 and stats.cached_rows == 0


def test_time_grid_and_method():
    torch.testing.assert_close(time_grid(Uniform(3, T=10), 4), torch.tensor([10.0, 8, 5, 2, 0], dtype=torch.float64))
    torch.testing.assert_close(time_grid(MaskedDiffusion(3), 4), torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0],
                                                                              dtype=torch.float64))
    with pytest.raises(ValueError, match="exceeds the process's T=10"):
        time_grid(Uniform(3, T=10), 11)
    with pytest.raises(ValueError, match="strictly decreasing and end at 0"):
        time_grid(MaskedDiffusion(3), [1.0, 0.5, 0.6, 0.0])
    with pytest.raises(ValueError, match="strictly decreasing and end at 0"):
        time_grid(MaskedDiffusion(3), [1.0, 0.5])
    assert ANCESTRAL.fn is ancestral and ANCESTRAL.options == ("cache", "stats") and ANCESTRAL.caches
