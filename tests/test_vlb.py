"""The variational bound's pieces against Monte Carlo and normalisation."""

import math

import pytest
import torch
from torch import nn

from torchdiffusion.model_denoiser import ModelDenoiser
from torchdiffusion.losses import diffusion_loss, x0_weight
from torchdiffusion.processes import EDM, DiscreteVP, Flow, VPLinear
from torchdiffusion.schedules import make_betas
from torchdiffusion.losses import ImportanceSampler, hybrid_loss
from torchdiffusion.likelihood.vlb import discretized_gaussian_log_likelihood, full_vlb_bpd, normal_kl, vlb_terms


def test_normal_kl_matches_monte_carlo(gen):
    m1, lv1, m2, lv2 = 0.3, math.log(0.5), -0.2, math.log(1.7)
    x = m1 + math.exp(lv1 / 2) * torch.randn(2_000_000, generator=gen, dtype=torch.float64)
    logq = -0.5 * ((x - m1) ** 2 / math.exp(lv1) + lv1)
    logp = -0.5 * ((x - m2) ** 2 / math.exp(lv2) + lv2)
    mc = (logq - logp).mean().item()
    t = lambda v: torch.tensor(v, dtype=torch.float64)
    assert normal_kl(t(m1), t(lv1), t(m2), t(lv2)).item() == pytest.approx(mc, abs=3e-3)


@pytest.mark.parametrize("mean,log_scale", [(0.0, -3.0), (0.9, -1.0), (-1.2, 0.5), (0.33, -6.0)])
def test_discretized_decoder_probabilities_sum_to_one(mean, log_scale):
    x = torch.arange(256, dtype=torch.float64) / 127.5 - 1
    logp = discretized_gaussian_log_likelihood(x, torch.full_like(x, mean), torch.full_like(x, log_scale))
    assert torch.exp(logp).sum().item() == pytest.approx(1.0, abs=1e-9)


class EpsNet(nn.Module):
    """A fixed smooth function of (x_t, t) standing in for a network, with a learned-variance half."""

    def forward(self, x, t):
        h = torch.tanh(x * 0.7 + 0.001 * t.reshape(-1, *([1] * (x.ndim - 1))))
        return torch.cat([h, 0.3 * torch.sin(h)], dim=1)


def test_vlb_kl_terms_match_monte_carlo(gen):
    p = DiscreteVP(make_betas("linear", 100))
    model = ModelDenoiser(EpsNet(), p, "eps", learned_variance=True)
    x0 = torch.rand(1, 1, 2, 2, generator=gen, dtype=torch.float64) * 2 - 1
    t = torch.tensor([40])
    xt = p.marginal(x0, t.double(), torch.randn(x0.shape, generator=gen, dtype=torch.float64))
    kl = vlb_terms(model, x0, t, xt).item()
    # Monte Carlo: E_q[log q - log p] with q the true posterior and p the model's Gaussian
    from torchdiffusion.likelihood.vlb import model_log_variance
    mean_q, var_q = p.posterior(x0, xt, t)
    x0_hat, frac = model.forward_with_variance(xt / p.alpha(t.double()), p.sigmas_ve[t])
    mean_p, _ = p.posterior(x0_hat, xt, t)
    logvar_p = model_log_variance(p, t, frac, x0)
    z = mean_q + var_q.sqrt() * torch.randn((400_000,) + x0.shape[1:], generator=gen, dtype=torch.float64)
    logq = (-0.5 * ((z - mean_q) ** 2 / var_q + var_q.log())).flatten(1).sum(1)
    logp = (-0.5 * ((z - mean_p) ** 2 / logvar_p.exp() + logvar_p)).flatten(1).sum(1)
    assert kl == pytest.approx((logq - logp).mean().item(), abs=5e-3)


def test_full_vlb_is_finite_positive_and_decomposes(gen):
    p = DiscreteVP(make_betas("cosine", 50))
    model = ModelDenoiser(EpsNet(), p, "eps", learned_variance=True)
    x0 = torch.randint(0, 256, (3, 1, 4, 4), generator=gen).double() / 127.5 - 1
    out = full_vlb_bpd(model, x0, generator=gen)
    assert torch.isfinite(out["bpd"]).all() and (out["bpd"] > 0).all()
    assert torch.allclose(out["terms_bpd"].sum(1) + out["prior_bpd"], out["bpd"])


def test_importance_sampler_weights_keep_the_estimator_unbiased(gen):
    s = ImportanceSampler(T=5, history=3)
    losses = torch.tensor([1.0, 2.0, 4.0, 8.0, 0.5], dtype=torch.float64)
    for _ in range(4):
        s.update(torch.arange(5), losses)
    t, w = s.sample(400_000, gen)
    est = (w * losses[t]).mean().item()
    assert est == pytest.approx(losses.mean().item(), rel=0.01)
    assert s.weights()[3] > s.weights()[0]


def test_hybrid_loss_vlb_part_trains_only_the_variance(gen):
    p = DiscreteVP(make_betas("linear", 100))
    conv = nn.Conv2d(1, 2, 1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = conv

        def forward(self, x, c):
            return self.conv(x)

    net = Net()
    model = ModelDenoiser(net, p, "eps", learned_variance=True)
    x0 = torch.rand(8, 1, 4, 4, generator=gen) * 2 - 1
    x0 = torch.round((x0 + 1) * 127.5) / 127.5 - 1
    loss = hybrid_loss(model, x0, lam=1.0, generator=torch.Generator().manual_seed(1)) \
        - diffusion_loss(model, x0, generator=torch.Generator().manual_seed(1))
    loss.mean().backward()
    w = conv.weight.grad[:, 0, 0, 0]
    assert w[0].abs().item() < 1e-12 and w[1].abs().item() > 0  # mean channel gets no L_vlb gradient


@pytest.mark.parametrize("pred", ["eps", "x0", "v", "velocity", "edm"])
def test_min_snr_weighting_is_the_same_x0_loss_for_every_target(pred, gen):
    # a fixed x0 error expressed through each target gives identical weighted losses (r(t) itself is checked against
    # to_x0 in test_parameterization)
    p = Flow() if pred == "velocity" else (EDM() if pred == "edm" else VPLinear())
    t = torch.tensor([0.3 * p.t_max + 0.7 * p.t_min], dtype=torch.float64)
    model = ModelDenoiser(nn.Identity(), p, pred)
    r = model.parameterization.error_factor(t)
    w = x0_weight("min_snr", p, t, gamma=5.0) / r
    if pred == "edm":
        from torchdiffusion.parameterization import edm_scalings
        assert r.item() == pytest.approx(1 / edm_scalings(p.sigma_ve(t))[1].item() ** 2)
    assert w.item() * r.item() == pytest.approx(min(math.exp(p.logsnr(t).item()), 5.0))


def test_discrete_elbo_weight_sums_to_the_snr_drop():
    p = DiscreteVP(make_betas("linear", 100))
    t = torch.arange(1, 100, dtype=torch.float64)
    w = x0_weight("elbo", p, t) / p.T
    snr = torch.exp(p.logsnr_table)
    assert torch.allclose(w, 0.5 * (snr[:-1] - snr[1:]))


class ExactDDPM:
    """The exact denoiser of a known data law on a DDPM table, shaped like a ModelDenoiser for the bound."""

    def __init__(self, process, denoiser):
        self.process, self.denoiser = process, denoiser

    def forward_with_variance(self, x, sigma, **cond):
        return self.denoiser(x.reshape(len(x), -1), sigma).reshape(x.shape), None


def test_kl_terms_of_gaussian_data_with_the_exact_denoiser_match_the_closed_form(gen):
    """x0 ~ N(m, s^2 I): E[L_{t-1}] = d c_t^2 Var(x0 | x_t) / (2 beta-tilde_t) with c_t = sqrt(abar_{t-1}) beta_t /
    (1 - abar_t) (Ho et al. 2020, eq. 7) and Var(x0 | x_t) = s^2 sigma^2 / (s^2 + sigma^2), sigma^2 = (1-abar)/abar."""
    p = DiscreteVP(make_betas("linear", 100))
    m, s, d, n = 0.3, 0.5, 2, 200_000
    exact = lambda x, sigma: m + s**2 / (s**2 + sigma.reshape(-1, 1) ** 2) * (x - m)  # noqa: E731
    model = ExactDDPM(p, exact)
    betas = make_betas("linear", 100).double()
    abar = torch.cumprod(1 - betas, 0)
    for k in (1, 10, 50, 99):
        x0 = m + s * torch.randn(n, d, generator=gen, dtype=torch.float64)
        t = torch.full((n,), k)
        xt = p.marginal(x0, t.double(), torch.randn(n, d, generator=gen, dtype=torch.float64))
        kl = vlb_terms(model, x0, t, xt)
        c = abar[k - 1].sqrt() * betas[k] / (1 - abar[k])
        beta_tilde = (1 - abar[k - 1]) / (1 - abar[k]) * betas[k]
        sigma2 = (1 - abar[k]) / abar[k]
        closed = d * c**2 * (s**2 * sigma2 / (s**2 + sigma2)) / (2 * beta_tilde)
        se = kl.std() / math.sqrt(n)
        assert abs(kl.mean() - closed) < 4 * se, (k, kl.mean().item(), closed.item())


def test_discrete_bound_with_the_exact_denoiser_is_the_entropy_plus_the_decoder_closed_form(gen):
    """Data uniform on three uint8 levels, exact denoiser: the bound's mean is >= H = log2 3 bits (cross-entropy >=
    entropy); the KL terms and the prior carry H (x_1 determines x0), and L_0 is the discretized decoder's closed
    form at the exact mean: -log2 P(|z| < 1/255) inside, -log2 P(z < 1/255) at the edges, z ~ N(0, beta-tilde_1)."""
    from torchdiffusion.analytic import GaussianMixture

    levels = torch.tensor([0.0, 128.0, 255.0], dtype=torch.float64) / 127.5 - 1
    points = GaussianMixture(torch.ones(3), levels[:, None], 1e-10)  # point masses: its denoiser is exact
    p = DiscreteVP(make_betas("cosine", 1000))
    x0 = levels.repeat(400)[:, None, None, None]  # (1200, 1, 1, 1): every level equally often
    out = full_vlb_bpd(ExactDDPM(p, points), x0, generator=gen)
    bpd, l0 = out["bpd"], out["terms_bpd"][:, 0]
    se = bpd.std().item() / math.sqrt(len(bpd))
    h = math.log2(3)
    assert bpd.mean().item() >= h - 3 * se
    assert (bpd - l0).mean().item() == pytest.approx(h, abs=max(3 * se, 0.01))
    u = (1 / 255) / math.sqrt(2 * p.posterior_log_variance_clipped(torch.tensor([0])).exp().item())
    inside, edge = -math.log2(math.erf(u)), -math.log2(0.5 * (1 + math.erf(u)))
    assert l0.mean().item() == pytest.approx((2 * edge + inside) / 3, rel=1e-6)
