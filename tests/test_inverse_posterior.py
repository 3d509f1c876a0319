"""The mixture's exact posterior under y = A x0 + noise_std n equals Bayes' rule computed numerically on a grid, its
draws have its moments, and noise-free masking pins the observed coordinates."""

import math

import pytest
import torch

from torchdiffusion.inverse import Mask, Matrix, MixturePosterior


def grid_posterior(gmm, log_lik, lo=-6.0, hi=6.0, n=1201):
    """Posterior weights of each component, mean and covariance by Bayes' rule on a 2-D grid."""
    t = torch.linspace(lo, hi, n, dtype=torch.float64)
    X = torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
    comp = torch.stack([math.log(w) - 0.5 * (((X - mu) ** 2 / v).sum(1) + torch.log(2 * math.pi * v).sum())
                        for w, mu, v in zip(gmm.weights.tolist(), gmm.means, gmm.variances)], 1)  # (N, K)
    logp = comp + log_lik(X)[:, None]
    p = torch.softmax(logp.reshape(-1), 0).reshape(logp.shape)
    px = p.sum(1)
    mean = (px[:, None] * X).sum(0)
    cov = (px[:, None, None] * (X - mean)[:, :, None] * (X - mean)[:, None, :]).sum(0)
    return p.sum(0), mean, cov


@pytest.mark.parametrize("A, noise_std", [([[0.8, -0.6]], 0.3), ([[1.0, 0.5], [-0.3, 0.9]], 0.5), ([[0.0, 2.0]], 0.2)])
def test_closed_form_equals_bayes_rule_on_a_grid(gmm, A, noise_std):
    A = torch.tensor(A, dtype=torch.float64)
    y = torch.linspace(-0.7, 1.1, A.shape[0], dtype=torch.float64)[None]
    post = MixturePosterior(gmm, Matrix(A), noise_std)
    w, mean, cov = grid_posterior(gmm, lambda X: -0.5 * (((X @ A.T - y) / noise_std) ** 2).sum(1))
    torch.testing.assert_close(post.weights(y)[0], w, atol=1e-6, rtol=0)
    torch.testing.assert_close(post.mean(y)[0], mean, atol=1e-6, rtol=0)
    torch.testing.assert_close(post.covariance(y)[0], cov, atol=1e-5, rtol=0)


def test_noise_free_masking_equals_the_conditional_density(gmm):
    post = MixturePosterior(gmm, Mask(torch.tensor([1.0, 0.0])), 0.0)
    y = torch.tensor([[0.7, 0.0], [-1.5, 0.0]], dtype=torch.float64)
    t = torch.linspace(-8, 8, 20001, dtype=torch.float64)
    for row in range(2):
        X = torch.stack([torch.full_like(t, float(y[row, 0])), t], 1)
        comp = torch.stack([gmm.weights[k].log() - 0.5 * (((X - gmm.means[k]) ** 2 / gmm.variances[k]).sum(1)
                            + torch.log(gmm.variances[k]).sum()) for k in range(3)], 1)
        p = torch.softmax(comp.reshape(-1), 0).reshape(comp.shape)
        m2 = (p.sum(1) * t).sum()
        v2 = (p.sum(1) * (t - m2) ** 2).sum()
        torch.testing.assert_close(post.weights(y)[row], p.sum(0), atol=1e-8, rtol=0)
        torch.testing.assert_close(post.mean(y)[row], torch.stack([y[row, 0], m2]), atol=1e-8, rtol=0)
        torch.testing.assert_close(post.std(y)[row], torch.stack([torch.zeros(()), v2.sqrt()]).double(),
                                   atol=1e-6, rtol=0)


@pytest.mark.parametrize("noise_std", [0.0, 0.4])
def test_exact_draws_have_the_posterior_moments(gmm, noise_std):
    op = Mask(torch.tensor([0.0, 1.0])) if noise_std == 0 else Matrix(torch.tensor([[1.0, 1.0]]))
    post = MixturePosterior(gmm, op, noise_std)
    y = op(torch.tensor([[0.4, 0.6]], dtype=torch.float64)).expand(40000, -1)
    x = post.sample(y, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(x.mean(0), post.mean(y[:1])[0], atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), post.covariance(y[:1])[0], atol=0.04, rtol=0)
    if noise_std == 0:
        torch.testing.assert_close(x[:, 1], y[:, 1], atol=1e-12, rtol=0)  # the observed coordinate is pinned
    labels = gmm.responsibilities(x, 0.0).argmax(1)
    freq = torch.bincount(labels, minlength=3).double() / len(x)
    assert (freq - post.weights(y[:1])[0]).abs().sum() / 2 < 0.06  # components of this mixture overlap a little
