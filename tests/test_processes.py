"""Processes against their own definitions: marginals from iterated steps, Bayes' rule, SDE moment ODEs."""

import math

import pytest
import torch

from torchdiffusion.processes import EDM, VE, DiscreteVP, Flow, SubVP, VPLinear
from torchdiffusion.schedules import alphas_cumprod, make_betas

CONTINUOUS = [VPLinear(), SubVP(), VE(0.01, 50.0), EDM(0.002, 80.0), Flow()]


def test_iterated_forward_steps_reproduce_closed_form_marginal(gen):
    p = DiscreteVP(make_betas("linear", 1000))
    x0 = 0.7
    x = torch.full((200_000,), x0, dtype=torch.float64)
    for t in range(1000):
        x = p.step(x, torch.tensor(t), torch.randn(x.shape, generator=gen, dtype=torch.float64))
        if t in (0, 50, 300, 999):
            ab = p.alphas_cumprod[t]
            se = math.sqrt(float(1 - ab) / len(x))
            assert abs(x.mean().item() - x0 * ab.sqrt().item()) < 5 * se
            assert abs(x.var().item() - (1 - ab).item()) < 5 * (1 - ab).item() * math.sqrt(2 / len(x))


@pytest.mark.parametrize("t", [1, 10, 500, 999])
def test_posterior_equals_bayes_rule_on_a_grid(t):
    p = DiscreteVP(make_betas("cosine", 1000))
    x0, xt = torch.tensor(0.4, dtype=torch.float64), torch.tensor(-0.3, dtype=torch.float64)
    ab_prev = p.alphas_cumprod[t - 1]
    beta = p.betas[t]
    grid = torch.linspace(-6, 6, 200_001, dtype=torch.float64)
    # q(x_{t-1} | x0) q(x_t | x_{t-1})
    logw = -(grid - ab_prev.sqrt() * x0) ** 2 / (2 * (1 - ab_prev)) - (xt - (1 - beta).sqrt() * grid) ** 2 / (2 * beta)
    w = torch.softmax(logw, 0)
    mean_num = (w * grid).sum()
    var_num = (w * (grid - mean_num) ** 2).sum()
    mean, var = p.posterior(x0.reshape(1, 1), xt.reshape(1, 1), torch.tensor([t]))
    assert mean.item() == pytest.approx(mean_num.item(), abs=1e-7)
    assert var.item() == pytest.approx(var_num.item(), rel=1e-5)


def test_posterior_at_t0_is_x0():
    p = DiscreteVP(make_betas("linear", 100))
    mean, var = p.posterior(torch.tensor([[0.25]]), torch.tensor([[1.0]]), torch.tensor([0]))
    assert mean.item() == pytest.approx(0.25) and var.item() == pytest.approx(0.0, abs=1e-20)


@pytest.mark.parametrize("p", CONTINUOUS, ids=lambda p: type(p).__name__)
def test_logsnr_inverse_round_trips(p):
    t = torch.linspace(p.t_min, p.t_max, 101, dtype=torch.float64)
    assert torch.allclose(p.t_of_logsnr(p.logsnr(t)), t, rtol=1e-9, atol=1e-9)
    assert torch.allclose(p.t_of_sigma_ve(p.sigma_ve(t)), t, rtol=1e-9, atol=1e-9)
    assert (p.logsnr(t).diff() < 0).all()


@pytest.mark.parametrize("p", CONTINUOUS, ids=lambda p: type(p).__name__)
def test_f_and_g_match_finite_differences_of_alpha_and_sigma(p):
    t = torch.linspace(p.t_min + 0.05 * (p.t_max - p.t_min), p.t_max - 0.05 * (p.t_max - p.t_min), 13,
                       dtype=torch.float64)
    h = 1e-6 * (p.t_max - p.t_min)
    dlog_alpha = (torch.log(p.alpha(t + h)) - torch.log(p.alpha(t - h))) / (2 * h)
    dvar = (p.sigma(t + h) ** 2 - p.sigma(t - h) ** 2) / (2 * h)
    assert torch.allclose(p.f(t), dlog_alpha, rtol=1e-5, atol=1e-7)
    g2 = dvar - 2 * dlog_alpha * p.sigma(t) ** 2
    assert torch.allclose(p.g(t) ** 2, g2, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("p", CONTINUOUS, ids=lambda p: type(p).__name__)
def test_sde_moment_equations_reproduce_marginal(p):
    # For dx = f x dt + g dw: m' = f m, V' = 2 f V + g^2 (Sarkka & Solin 2019, eq. 5.51); RK4 from t_min.
    t0, t1 = p.t_min, p.t_min + 0.9 * (p.t_max - p.t_min)
    m0, v0 = 1.3, 0.2  # x0 ~ N(m0, v0)
    m = p.alpha(torch.tensor(t0, dtype=torch.float64)) * m0
    V = p.alpha(torch.tensor(t0, dtype=torch.float64)) ** 2 * v0 + p.sigma(torch.tensor(t0, dtype=torch.float64)) ** 2
    n = 4000
    # integrate in u = log(t) for EDM/VE-like spans where t ranges over decades
    ts = torch.exp(torch.linspace(math.log(t0), math.log(t1), n + 1, dtype=torch.float64)) if t0 > 0 \
        else torch.linspace(t0, t1, n + 1, dtype=torch.float64)

    def rhs(t, y):
        tt = torch.tensor(t, dtype=torch.float64)
        f, g = p.f(tt), p.g(tt)
        return torch.stack([f * y[0], 2 * f * y[1] + g**2])

    y = torch.stack([m, V])
    for a, b in zip(ts[:-1].tolist(), ts[1:].tolist()):
        h = b - a
        k1 = rhs(a, y); k2 = rhs(a + h / 2, y + h / 2 * k1); k3 = rhs(a + h / 2, y + h / 2 * k2); k4 = rhs(b, y + h * k3)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    tt = torch.tensor(t1, dtype=torch.float64)
    assert y[0].item() == pytest.approx((p.alpha(tt) * m0).item(), rel=1e-6, abs=1e-9)
    assert y[1].item() == pytest.approx((p.alpha(tt) ** 2 * v0 + p.sigma(tt) ** 2).item(), rel=1e-6)


def test_discrete_process_matches_table_and_interpolates_monotonically():
    betas = make_betas("linear", 1000)
    p = DiscreteVP(betas)
    t = torch.arange(1000, dtype=torch.float64)
    assert torch.allclose(p.alpha(t) ** 2, alphas_cumprod(betas), rtol=1e-12)
    assert torch.allclose(p.alpha(t) ** 2 + p.sigma(t) ** 2, torch.ones(1000, dtype=torch.float64))
    tf = torch.linspace(0, 999, 9999, dtype=torch.float64)
    assert (p.sigma_ve(tf).diff() > 0).all()
    assert torch.allclose(p.t_of_sigma_ve(p.sigma_ve(tf)), tf, atol=1e-8)


@pytest.mark.parametrize("p", CONTINUOUS + [DiscreteVP(make_betas("cosine", 50))], ids=lambda p: type(p).__name__)
def test_prior_sample_has_prior_std(p, gen):
    x = p.prior_sample((100_000,), generator=gen, dtype=torch.float64)
    assert x.std().item() == pytest.approx(p.prior_std(), rel=0.02)


def test_bad_betas_raise():
    with pytest.raises(ValueError, match="betas"):
        DiscreteVP(torch.tensor([0.1, 1.5]))
