"""D3PM kernels and the masked process against their definitions: one-step matrices rebuilt here from the papers'
formulas, marginals as explicit products of them, posteriors by Bayes' rule over an enumerated x_(t-1)."""

import math

import pytest
import torch

from torchdiffusion.discrete import Absorbing, DiscretizedGaussian, MaskedDiffusion, NearestNeighbour, Uniform
from torchdiffusion.discrete.schedules import d3pm_betas, masking_alpha

T = 6


def kernels():
    """One of each kernel on a few classes, with schedules that mix visibly within T steps."""
    return {
        "uniform": Uniform(4, T=T),
        "absorbing": Absorbing(3, T=T),
        "absorbing_cosine": Absorbing(3, T=T, schedule="cosine"),
        "gaussian": DiscretizedGaussian(5, T=T, beta_start=0.1, beta_end=1.5),
        "nearest_neighbour": NearestNeighbour(5, T=T, beta_start=0.1, beta_end=1.5),
    }


def paper_step_matrix(name: str, p, t: int) -> torch.Tensor:
    """Q_t written from Austin et al. 2021 (appendix A.2) with loops, independently of the library."""
    K, beta = p.num_classes, float(p.betas[t])
    q = torch.zeros(K, K, dtype=torch.float64)
    if name == "uniform":
        for i in range(K):
            for j in range(K):
                q[i, j] = (1 - beta) * (i == j) + beta / K
    elif name.startswith("absorbing"):
        m = K - 1
        for i in range(K):
            for j in range(K):
                q[i, j] = (1 - beta) * (i == j) + beta * (j == m)
    elif name == "gaussian":
        z = sum(math.exp(-4 * n * n / ((K - 1) ** 2 * beta)) for n in range(-(K - 1), K))
        for i in range(K):
            for j in range(K):
                if i != j:
                    q[i, j] = math.exp(-4 * (i - j) ** 2 / ((K - 1) ** 2 * beta)) / z
            q[i, i] = 1 - q[i].sum()
    elif name == "nearest_neighbour":
        rate = (K - 1) ** 2 * beta / 16
        gen = torch.zeros(K, K, dtype=torch.float64)
        for i in range(K - 1):
            gen[i, i + 1] = gen[i + 1, i] = rate
        gen -= torch.diag(gen.sum(1))
        q = torch.linalg.matrix_exp(gen)
    return q


def product(mats, K: int) -> torch.Tensor:
    """mats[0] @ mats[1] @ ... (the K x K identity for none)."""
    out = torch.eye(K, dtype=torch.float64)
    for m in mats:
        out = out @ m
    return out


@pytest.mark.parametrize("name", list(kernels()))
def test_step_matrices_follow_the_paper_and_rows_are_distributions(name):
    p = kernels()[name]
    for t in range(1, T + 1):
        q, qbar = p.step_matrix(t), p.marginal_matrix(t)
        torch.testing.assert_close(q, paper_step_matrix(name, p, t), rtol=0, atol=1e-12)
        for m in (q, qbar):
            assert (m >= 0).all() and torch.allclose(m.sum(1), torch.ones(p.num_classes, dtype=torch.float64))
    if name in ("gaussian", "nearest_neighbour", "uniform"):  # doubly stochastic: uniform is stationary
        torch.testing.assert_close(p.marginal_matrix(T).sum(0), torch.ones(p.num_classes, dtype=torch.float64))


@pytest.mark.parametrize("name", list(kernels()))
def test_marginals_are_products_of_one_step_matrices(name):
    p = kernels()[name]
    K = p.num_classes
    steps = [paper_step_matrix(name, p, t) for t in range(1, T + 1)]
    for t in range(0, T + 1):
        torch.testing.assert_close(p.marginal_matrix(t), product(steps[:t], K), rtol=0, atol=1e-12)
    for s, t in [(1, 4), (2, 6), (3, 3)]:  # multi-step transitions used by skip-step sampling
        torch.testing.assert_close(p.matrix(s, t), product(steps[s:t], K), rtol=0, atol=1e-12)
    # the batched marginal q(x_t | x0) = x0 Qbar_t for every x0 and a per-sample t
    x0 = torch.arange(K).repeat(T + 1)[:, None]  # (B, 1)
    t = torch.arange(T + 1).repeat_interleave(K).double()
    expected = torch.stack([product(steps[:int(ti)], K)[int(i)] for i, ti in zip(x0[:, 0], t)])
    torch.testing.assert_close(p.marginal_probs(x0, t)[:, 0], expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_masked_process_marginals_compose_and_match_alpha(schedule):
    p = MaskedDiffusion(3, schedule)
    grid = [0.0, 0.1, 0.35, 0.5, 0.8, 1.0]
    for i in range(1, len(grid)):
        composed = product([p.matrix(grid[k - 1], grid[k]) for k in range(1, i + 1)], 4)
        torch.testing.assert_close(composed, p.marginal_matrix(grid[i]), rtol=0, atol=1e-12)
        alpha = float(masking_alpha(schedule, torch.tensor(grid[i], dtype=torch.float64))[0])
        expected = torch.tensor([[alpha, 0, 0, 1 - alpha], [0, alpha, 0, 1 - alpha], [0, 0, alpha, 1 - alpha],
                                 [0, 0, 0, 1]], dtype=torch.float64)
        torch.testing.assert_close(p.marginal_matrix(grid[i]), expected, rtol=0, atol=1e-12)
    assert torch.equal(p.marginal_matrix(1.0)[:, 3], torch.ones(4, dtype=torch.float64))  # x_1 is all [MASK]
    # alpha' by finite differences, and the bound's weight -alpha' / (1 - alpha)
    t = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    a, da = masking_alpha(schedule, t)
    h = 1e-6
    fd = (masking_alpha(schedule, t + h)[0] - masking_alpha(schedule, t - h)[0]) / (2 * h)
    torch.testing.assert_close(da, fd, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(p.weight(t), -da / (1 - a))


def brute_force_posterior(qs, x0: int, xt: int, s: int, t: int) -> torch.Tensor:
    """q(x_s | x_t, x0) = q(x_t | x_s) q(x_s | x0) / sum_(x_s') (...), enumerating x_s, from step matrices qs."""
    K = qs[0].shape[0]
    q_s_given_0 = product(qs[:s], K)[x0]
    q_t_given_s = product(qs[s:t], K)[:, xt]
    joint = torch.tensor([float(q_t_given_s[j] * q_s_given_0[j]) for j in range(K)], dtype=torch.float64)
    return joint / joint.sum()


def reachable_pairs(p, t: int):
    """(x0, x_t) with x0 a data class and q(x_t | x0) > 0."""
    data = range(p.num_classes - (p.mask_id is not None))
    qbar = p.marginal_matrix(t)
    return [(a, b) for a in data for b in range(p.num_classes) if qbar[a, b] > 0]


@pytest.mark.parametrize("name", list(kernels()))
def test_posteriors_are_bayes_rule_by_enumeration(name):
    p = kernels()[name]
    qs = [paper_step_matrix(name, p, t) for t in range(1, T + 1)]
    for s, t in [(0, 1), (1, 2), (3, 4), (T - 1, T), (1, 4), (0, T)]:
        pairs = reachable_pairs(p, t)
        x0 = torch.tensor([[a] for a, _ in pairs])
        xt = torch.tensor([[b] for _, b in pairs])
        tt = torch.full((len(pairs),), float(t), dtype=torch.float64)
        got = p.posterior_log_probs(xt, x0, tt - (t - s), tt).exp()[:, 0]
        want = torch.stack([brute_force_posterior(qs, a, b, s, t) for a, b in pairs])
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", list(kernels()) + ["masked"])
def test_reverse_step_mixes_posteriors_over_p_x0(name, gen):
    """p(x_s | x_t) = sum over the x0 that reach x_t of q(x_s | x_t, x0) p(x0 | x_t) / their mass; a point mass
    p(x0 | x_t) gives back the posterior itself."""
    p = MaskedDiffusion(3, "cosine") if name == "masked" else kernels()[name]
    s, t = (0.3, 0.7) if name == "masked" else (2, 5)
    K = p.num_classes
    pairs = [(a, b) for a in range(K - (p.mask_id is not None)) for b in range(K) if p.marginal_matrix(t)[a, b] > 0]
    xt_vals = sorted({b for _, b in pairs})
    xt = torch.tensor(xt_vals)[:, None]
    logits = torch.randn(len(xt_vals), 1, K, generator=gen, dtype=torch.float64)
    tt = torch.full((len(xt_vals),), float(t), dtype=torch.float64)
    got = p.reverse_log_probs(xt, logits, torch.full_like(tt, s), tt).exp()[:, 0]
    p0 = p.x0_log_probs(logits).exp()[:, 0]  # (B, K), no mass on [MASK]
    qbar_t, q_st, qbar_s = p.marginal_matrix(t), p.matrix(s, t), p.marginal_matrix(s)
    for row, b in enumerate(xt_vals):
        mix, mass = torch.zeros(K, dtype=torch.float64), 0.0
        for a in range(K):
            if qbar_t[a, b] > 0 and p0[row, a] > 0:
                post = q_st[:, b] * qbar_s[a] / qbar_t[a, b]  # Bayes' rule for x_s
                mix += p0[row, a] * post
                mass += float(p0[row, a])
        torch.testing.assert_close(got[row], mix / mass, rtol=0, atol=1e-10)
    # a point mass on a reachable x0 gives the posterior q(x_s | x_t, x0)
    x0 = torch.tensor([[a] for a, _ in pairs])
    xt2 = torch.tensor([[b] for _, b in pairs])
    onehot = torch.where(torch.nn.functional.one_hot(x0, K).bool(), 0.0, -torch.inf).double()
    tt2 = torch.full((len(pairs),), float(t), dtype=torch.float64)
    torch.testing.assert_close(p.reverse_log_probs(xt2, onehot, torch.full_like(tt2, s), tt2).exp(),
                               p.posterior_log_probs(xt2, x0, torch.full_like(tt2, s), tt2).exp(), rtol=0, atol=1e-12)


def test_schedules_tables_and_errors():
    betas = d3pm_betas("mutual_info", 5)
    torch.testing.assert_close(betas, torch.tensor([0, 1 / 5, 1 / 4, 1 / 3, 1 / 2, 1], dtype=torch.float64))
    p = Absorbing(4, T=5)
    torch.testing.assert_close(p.alpha_bars, 1 - torch.arange(6, dtype=torch.float64) / 5)  # mask fraction t / T
    assert p.mask_id == 4 and p.num_classes == 5 and p.prior_kl(torch.zeros(2, 3, dtype=torch.long)).abs().max() == 0
    assert d3pm_betas("cosine", 10)[1:].gt(0).all() and d3pm_betas("linear", 10)[0] == 0
    with pytest.raises(ValueError, match="unknown beta schedule 'sqrt'; choose one of linear, cosine, mutual_info"):
        Uniform(3, schedule="sqrt")
    with pytest.raises(ValueError, match="unknown masking schedule"):
        MaskedDiffusion(3, "geometric")
    with pytest.raises(ValueError, match="0 <= s <= t <= 6"):
        kernels()["gaussian"].matrix(4, 2)
