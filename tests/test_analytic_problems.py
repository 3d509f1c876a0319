"""The held-out problem generator and the rotated (full-covariance) mixture, against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from torchdiffusion.analytic import GaussianMixture, RotatedGaussianMixture
from torchdiffusion.analytic_problems import random_mixture, random_rotations
from torchdiffusion.sampling import sample_dopri5


def rotated(seed: int, k: int = 3, d: int = 4) -> RotatedGaussianMixture:
    g = torch.Generator().manual_seed(seed)
    var = 0.05 + torch.rand(k, d, generator=g, dtype=torch.float64)
    return RotatedGaussianMixture(0.5 + torch.rand(k, generator=g, dtype=torch.float64),
                                  torch.randn(k, d, generator=g, dtype=torch.float64), var, random_rotations(k, d, g))


@pytest.mark.parametrize("seed", [0, 1, 1000, 2000, 2011])
def test_problem_shapes_and_ranges(seed):
    p = random_mixture(seed)
    m = p.mixture
    assert 2 <= p.dim <= 64 and 2 <= p.components <= 32 and 1 <= p.decades <= 3
    assert m.means.shape == (p.components, p.dim) and m.variances.shape == (p.components, p.dim)
    assert isinstance(m, RotatedGaussianMixture) == p.rotated
    assert 10**-0.5 * 0.999 <= m.sigma_data <= 10**0.3 * 1.001
    # the component stds (geometric mean over axes) span the drawn decades, up to the per-axis anisotropy
    log_std = 0.5 * m.variances.log10().mean(1)
    assert abs(float(log_std.max() - log_std.min()) - p.decades) <= 2 * p.anisotropy + 1e-9
    x = torch.randn(5, p.dim, dtype=torch.float64)
    assert m(x, torch.full((5,), 0.3, dtype=torch.float64)).shape == (5, p.dim)


def test_problems_are_deterministic_and_differ_between_seeds():
    a, b, c = random_mixture(1003), random_mixture(1003), random_mixture(1004)
    assert torch.equal(a.mixture.means, b.mixture.means) and torch.equal(a.mixture.variances, b.mixture.variances)
    assert (a.dim, a.components) != (c.dim, c.components) or not torch.equal(a.mixture.means, c.mixture.means)


def test_generator_covers_its_ranges():
    ps = [random_mixture(s) for s in range(60)]
    assert min(p.dim for p in ps) <= 4 and max(p.dim for p in ps) >= 32
    assert min(p.components for p in ps) <= 3 and max(p.components for p in ps) >= 20
    assert 0 < sum(p.rotated for p in ps) < len(ps)


@pytest.mark.parametrize("seed", [-1, 1.5, True])
def test_bad_seed_is_a_value_error(seed):
    with pytest.raises(ValueError, match="seed"):
        random_mixture(seed)


def test_rotated_denoiser_is_tweedie():
    """E[x0 | x] = x + sigma^2 grad log p_sigma(x), the gradient taken by autograd of the closed-form density."""
    m = rotated(0)
    x = torch.randn(8, 4, dtype=torch.float64, requires_grad=True)
    for sigma in (0.05, 0.7, 5.0):
        (grad,) = torch.autograd.grad(m.log_prob(x, sigma).sum(), x)
        torch.testing.assert_close(m(x.detach(), torch.full((8,), sigma, dtype=torch.float64)),
                                   x.detach() + sigma**2 * grad, rtol=1e-9, atol=1e-10)


def test_identity_rotations_give_the_diagonal_mixture():
    g = torch.Generator().manual_seed(3)
    w, mu, var = torch.rand(4, generator=g) + 0.1, torch.randn(4, 3, generator=g), torch.rand(4, 3, generator=g) + 0.1
    rot = RotatedGaussianMixture(w, mu, var, torch.eye(3).expand(4, 3, 3))
    diag = GaussianMixture(w, mu, var)
    x = torch.randn(6, 3, dtype=torch.float64)
    s = torch.full((6,), 0.4, dtype=torch.float64)
    torch.testing.assert_close(rot(x, s), diag(x, s))
    torch.testing.assert_close(rot.log_prob(x, 0.4), diag.log_prob(x, 0.4))
    assert math.isclose(rot.sigma_data, diag.sigma_data, rel_tol=1e-12)


def test_rotated_samples_have_the_stated_covariance():
    m = rotated(1, k=2, d=3)
    x, _ = m.sample(200_000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(torch.cov(x.T), m.covariance(), atol=0.03, rtol=0.03)


def test_exact_flow_map_of_one_rotated_component():
    """One component: the probability-flow map from sigma_max to 0 is mu + R diag(sqrt(var / (var + sigma_max^2)))
    R^T (x - mu) (each eigen-axis scales linearly); the adaptive solve reproduces it."""
    g = torch.Generator().manual_seed(5)
    var, mu, R = torch.rand(1, 4, generator=g, dtype=torch.float64) + 0.02, torch.randn(1, 4, dtype=torch.float64,
                                                                                        generator=g), \
        random_rotations(1, 4, g)
    m = RotatedGaussianMixture(torch.ones(1), mu, var, R)
    smax = 20.0
    x = smax * torch.randn(16, 4, generator=g, dtype=torch.float64)
    exact = mu + ((x - mu) @ R[0]) * (var / (var + smax**2)).sqrt() @ R[0].T
    out = sample_dopri5(m, x, torch.tensor([smax, 1e-5, 0.0], dtype=torch.float64), rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(out, exact, atol=1e-4, rtol=1e-4)


def test_rotations_must_be_orthogonal():
    with pytest.raises(ValueError, match="orthogonal"):
        RotatedGaussianMixture(torch.ones(1), torch.zeros(1, 2), torch.ones(1, 2), 2 * torch.eye(2)[None])
