"""Likelihoods against closed forms: the flow's log-density of a Gaussian mixture, Hutchinson's unbiasedness, the
VDM bound with an exact denoiser, the stratified DDPM bound, and the bits/dim conventions."""

import math

import pytest
import torch
from torch import nn

from torchdiffusion.analytic import GaussianMixture
from torchdiffusion.model_denoiser import ModelDenoiser
from torchdiffusion.likelihood import (bits_per_dim, ode_log_likelihood, stratified_vlb_bpd, uniform_dequantize,
                                       vdm_elbo)
from torchdiffusion.processes import DiscreteVP
from torchdiffusion.schedules import make_betas
from torchdiffusion.likelihood.vlb import full_vlb_bpd, standard_normal_cdf


def mixture_3d() -> GaussianMixture:
    means = torch.tensor([[1.0, -1.0, 0.5], [-1.5, 0.5, 0.0]], dtype=torch.float64)
    var = torch.tensor([[0.2, 0.1, 0.3], [0.1, 0.4, 0.05]], dtype=torch.float64)
    return GaussianMixture(torch.tensor([0.6, 0.4]), means, var)


def gaussian_log_density(x, mean, var):
    """log N(x; mean, diag var), summed over the last axis."""
    return (-0.5 * ((x - mean) ** 2 / var + torch.log(2 * math.pi * var))).sum(-1)


def expected_gaussian_log_density(x0, s, mean, var):
    """E_{z ~ N(x0, s^2 I)} log N(z; mean, diag var) = sum -1/2 (log 2 pi var + ((x0 - mean)^2 + s^2) / var)."""
    return (-0.5 * (torch.log(2 * math.pi * var) + ((x0 - mean) ** 2 + s**2) / var)).sum(-1)


# --- the probability-flow ODE --------------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["2d", "3d"])
def test_flow_log_likelihood_of_a_mixture_is_its_noisy_log_density(gmm, which):
    gm = gmm if which == "2d" else mixture_3d()
    d, smin, smax = gm.dim, 1e-3, 200.0
    x, _ = gm.sample(8, generator=torch.Generator().manual_seed(1))
    logp, st = ode_log_likelihood(gm, x, sigma_min=smin, sigma_max=smax, rtol=1e-7, atol=1e-7, return_stats=True)
    exact = gm.log_prob(x, smin)
    # the N(0, sigma_max^2 I) prior misses the data's mean: O(|mean| / sigma_max) nats at a point
    assert (logp - exact).abs().max().item() / d < 0.01
    # with the exact marginal at sigma_max in place of the prior, only the solver's error remains
    with_exact_prior = gm.log_prob(st["x_end"], smax) + st["delta_logp"][:, 0]
    assert (with_exact_prior - exact).abs().max().item() / d < 1e-5
    again = ode_log_likelihood(gm, x, sigma_min=smin, sigma_max=smax, rtol=1e-7, atol=1e-7,
                               prior_log_prob=lambda z: gm.log_prob(z, smax))
    assert torch.allclose(again, with_exact_prior, atol=1e-9)


def test_flow_log_likelihood_of_a_gaussian_is_the_closed_form():
    # D is linear, the flow is x(s) = mu + (x - mu) sqrt((v + s^2) / (v + s_min^2)) and div f = sum s^2 / (v + s^2):
    # log p = log N(x(s_max); 0, s_max^2) + 1/2 sum log((v + s_max^2) / (v + s_min^2))
    mu, v = torch.tensor([0.3, -0.5, 1.0], dtype=torch.float64), torch.tensor([0.25, 0.6, 0.1], dtype=torch.float64)
    g = GaussianMixture(torch.ones(1), mu[None], v[None])
    smin, smax = 0.01, 50.0
    x, _ = g.sample(6, generator=torch.Generator().manual_seed(2))
    logp = ode_log_likelihood(g, x, sigma_min=smin, sigma_max=smax, rtol=1e-8, atol=1e-8)
    x_end = mu + (x - mu) * torch.sqrt((v + smax**2) / (v + smin**2))
    closed = gaussian_log_density(x_end, 0.0, torch.full_like(v, smax**2)) \
        + 0.5 * torch.log((v + smax**2) / (v + smin**2)).sum()
    assert torch.allclose(logp, closed, atol=1e-6)
    exact_prior = ode_log_likelihood(g, x, sigma_min=smin, sigma_max=smax, rtol=1e-8, atol=1e-8,
                                     prior_log_prob=lambda z: g.log_prob(z, smax))
    assert torch.allclose(exact_prior, gaussian_log_density(x, mu, v + smin**2), atol=1e-6)


def test_hutchinson_estimates_average_to_the_exact_trace(gmm):
    x, _ = gmm.sample(4, generator=torch.Generator().manual_seed(3))
    kw = dict(sigma_min=0.01, sigma_max=100.0, rtol=1e-6, atol=1e-6)
    exact = ode_log_likelihood(gmm, x, **kw)
    se = {}
    for probe in ("gaussian", "rademacher"):
        est, st = ode_log_likelihood(gmm, x, trace="hutchinson", probes=32, probe=probe,
                                     generator=torch.Generator().manual_seed(4), return_stats=True, **kw)
        per_probe = st["logp_probes"]  # (B, P): each column one unbiased estimate with its probe fixed over the solve
        assert torch.allclose(est, per_probe.mean(1))
        se[probe] = per_probe.std(1) / math.sqrt(per_probe.shape[1])
        assert torch.allclose(st["stderr"], se[probe])
        z = (est - exact) / se[probe]
        assert (z.abs() < 4).all(), (probe, z)
    # Var(v^T A v) = 2 ||A||_F^2 for Gaussian v, 2 sum_{i != j} A_ij^2 for Rademacher v (Hutchinson 1989)
    assert (se["rademacher"] < se["gaussian"]).all()


# --- bits per dimension ---------------------------------------------------------------------------------------------

def test_a_uniform_density_on_the_dequantized_cube_is_eight_bits_per_dim():
    d = 5
    logp_uniform = torch.tensor([-d * math.log(2.0)], dtype=torch.float64)  # U[-1, 1)^d
    assert bits_per_dim(logp_uniform, d).item() == pytest.approx(8.0, abs=1e-12)
    assert bits_per_dim(logp_uniform, d, dequantization="none").item() == pytest.approx(1.0, abs=1e-12)
    assert bits_per_dim(torch.tensor([0.0]), d, bins=16, data_range=1.0).item() == pytest.approx(4.0)


def test_uniform_dequantization_keeps_each_value_in_its_own_bin(gen):
    k = torch.arange(256, dtype=torch.float64).repeat(4)
    x = k / 127.5 - 1
    xq = uniform_dequantize(x, generator=gen)
    assert torch.equal(torch.floor((xq + 1) * 128), k)
    assert (xq >= -1).all() and (xq < 1).all()


# --- the continuous-time VDM bound ------------------------------------------------------------------------------------

def test_vdm_bound_of_a_gaussian_with_its_exact_denoiser_is_the_closed_form(gen):
    # For the exact denoiser, prior KL + diffusion loss = KL(q(x_min | x0) || p_{sigma_min}) plus the prior's
    # mismatch E_{q(x_max | x0)}[log p_{sigma_max} - log N(0, sigma_max^2)]; with the Gaussian decoder the expected
    # bound is then E_q[log p_{sigma_min}(x_min)] - mismatch, below the model's log p_{sqrt 2 sigma_min}(x0).
    mu, v = torch.tensor([0.3, -0.5], dtype=torch.float64), torch.tensor([0.25, 0.6], dtype=torch.float64)
    g = GaussianMixture(torch.ones(1), mu[None], v[None])
    smin, smax, R = 0.05, 100.0, 200_000
    for x0 in torch.tensor([[0.0, 0.0], [1.0, -2.0]], dtype=torch.float64):
        out = vdm_elbo(g, x0.repeat(R, 1), sigma_min=smin, sigma_max=smax, decoder="gaussian", generator=gen)
        est, se = out["elbo"].mean().item(), out["elbo"].std().item() / math.sqrt(R)
        mismatch = expected_gaussian_log_density(x0, smax, mu, v + smax**2) \
            - expected_gaussian_log_density(x0, smax, 0.0, torch.full_like(v, smax**2))
        expected = expected_gaussian_log_density(x0, smin, mu, v + smin**2) - mismatch
        assert abs(est - expected.item()) < 4 * se, (est, expected.item(), se)
        assert expected.item() < gaussian_log_density(x0, mu, v + 2 * smin**2).item()
        assert torch.allclose(out["bpd"], -out["elbo"] / (2 * math.log(2)))


def test_vdm_bound_never_exceeds_the_mixtures_log_likelihood(gmm, gen):
    # the generative model (exact reverse flow to sigma_min, then x0 ~ N(x_min, sigma_min^2)) has density
    # p_{sqrt 2 sigma_min}; the bound's expectation equals E_q[log p_{sigma_min}] minus the prior mismatch
    smin, smax, R = 0.05, 1000.0, 100_000
    x0s, _ = gmm.sample(3, generator=torch.Generator().manual_seed(5))
    for x0 in x0s:
        out = vdm_elbo(gmm, x0.repeat(R, 1), sigma_min=smin, sigma_max=smax, samples=2, decoder="gaussian",
                       generator=gen)
        est, se = out["elbo"].mean().item(), out["elbo"].std().item() / math.sqrt(R)
        z = x0 + smin * torch.randn(R, 2, generator=gen, dtype=torch.float64)
        z_max = x0 + smax * torch.randn(R, 2, generator=gen, dtype=torch.float64)
        mismatch = (gmm.log_prob(z_max, smax) - gaussian_log_density(z_max, 0.0, torch.full((2,), smax**2))).mean()
        expected = (gmm.log_prob(z, smin).mean() - mismatch).item()
        assert abs(est - expected) < 4 * se + 1e-3, (est, expected, se)
        log_lik = gmm.log_prob(x0[None], math.sqrt(2) * smin).item()
        assert est < log_lik + 4 * se and expected < log_lik


def test_discretized_vdm_bound_stays_below_the_models_bin_probability(gen):
    # 1-D data on the 8-bit grid; the model's P(k) = int p_{sigma_min}(z) P(bin k | z) dz by quadrature
    mu, v, smin, smax, R = 0.1, 0.04, 0.003, 100.0, 100_000
    g = GaussianMixture(torch.ones(1), torch.tensor([[mu]]), v)
    h = 1 / 255
    for k in (110, 140, 255):
        x0 = torch.full((R, 1), k / 127.5 - 1, dtype=torch.float64)
        out = vdm_elbo(g, x0, sigma_min=smin, sigma_max=smax, samples=2, generator=gen)
        est, se = out["elbo"].mean().item(), out["elbo"].std().item() / math.sqrt(R)
        top = x0[0, 0] + h + 12 * smin + (1.0 if k == 255 else 0.0)  # the last bin reaches to +infinity
        z = torch.linspace(x0[0, 0] - h - 12 * smin, top, 100_001, dtype=torch.float64)
        upper = torch.ones_like(z) if k == 255 else standard_normal_cdf((x0[0, 0] + h - z) / smin)
        p_bin = upper - standard_normal_cdf((x0[0, 0] - h - z) / smin)
        log_p_k = math.log(torch.trapezoid(g.log_prob(z[:, None], smin).exp() * p_bin, z).item())
        assert est < log_p_k + 4 * se, (k, est, log_p_k)
        if k < 255:  # inside the range the bound is tight (measured gaps 0.0-0.06 nats, se 0.02); the open last bin's
            assert est > log_p_k - 0.15  # posterior is far wider than q(x_min | x0) = N(x0, sigma_min^2): ~1.5 nats
        assert torch.allclose(out["bpd"], -out["elbo"] / math.log(2))


# --- the discrete-time DDPM bound -----------------------------------------------------------------------------------

class SmoothEps(nn.Module):
    """A fixed smooth function of (x_t, t) standing in for a network, with a learned-variance half."""

    def forward(self, x, t):
        h = torch.tanh(0.8 * x + 0.02 * t.reshape(-1, *([1] * (x.ndim - 1))))
        return torch.cat([h, 0.5 * torch.cos(h + 0.01 * t.reshape(-1, *([1] * (x.ndim - 1))))], dim=1)


@pytest.mark.parametrize("steps", [1, 3, 5])
def test_stratified_bound_is_an_unbiased_estimate_of_the_full_sum(steps, gen):
    p = DiscreteVP(make_betas("linear", 12))
    model = ModelDenoiser(SmoothEps(), p, "eps", learned_variance=True)
    one = torch.randint(0, 256, (1, 1, 2, 2), generator=gen).double() / 127.5 - 1
    x0 = one.expand(4000, -1, -1, -1)  # rows are independent draws of each estimator
    strat = stratified_vlb_bpd(model, x0, steps, generator=gen)["bpd"]
    full = full_vlb_bpd(model, x0, generator=gen)["bpd"]
    se = math.sqrt(strat.var().item() / len(strat) + full.var().item() / len(full))
    assert abs(strat.mean().item() - full.mean().item()) < 4 * se, (strat.mean(), full.mean(), se)
    assert steps == p.T or strat.std() > full.std()  # fewer terms, more variance


def test_stratified_bound_with_every_step_has_the_full_sums_law(gen):
    p = DiscreteVP(make_betas("cosine", 6))
    model = ModelDenoiser(SmoothEps(), p, "eps", learned_variance=True)
    x0 = (torch.randint(0, 256, (1, 1, 2, 2), generator=gen).double() / 127.5 - 1).expand(3000, -1, -1, -1)
    a = stratified_vlb_bpd(model, x0, p.T, generator=torch.Generator().manual_seed(7))
    b = full_vlb_bpd(model, x0, generator=torch.Generator().manual_seed(8))
    assert torch.allclose(a["prior_bpd"], b["prior_bpd"])
    se = math.sqrt((a["bpd"].var().item() + b["bpd"].var().item()) / len(x0))
    assert abs(a["bpd"].mean().item() - b["bpd"].mean().item()) < 4 * se


def test_a_fitted_log_snr_proposal_keeps_the_bound_unbiased_and_cuts_its_variance(gen):
    """Same Gaussian closed form as above, now with lambda drawn from a proposal fitted on 64 pilot rows: the mean
    still matches, and the variance of the diffusion loss falls to under half of the uniform proposal's."""
    from torchdiffusion.likelihood import LogSNRProposal, fit_log_snr_proposal

    mu, v = torch.tensor([0.3, -0.5], dtype=torch.float64), torch.tensor([0.25, 0.6], dtype=torch.float64)
    g = GaussianMixture(torch.ones(1), mu[None], v[None])
    smin, smax, R = 0.05, 100.0, 100_000
    x0 = torch.tensor([1.0, -2.0], dtype=torch.float64)
    q = fit_log_snr_proposal(g, x0.repeat(64, 1), sigma_min=smin, sigma_max=smax, bins=32, generator=gen)
    fitted = vdm_elbo(g, x0.repeat(R, 1), sigma_min=smin, sigma_max=smax, decoder="gaussian", proposal=q,
                      generator=gen)
    uniform = vdm_elbo(g, x0.repeat(R, 1), sigma_min=smin, sigma_max=smax, decoder="gaussian", generator=gen)
    mismatch = expected_gaussian_log_density(x0, smax, mu, v + smax**2) \
        - expected_gaussian_log_density(x0, smax, 0.0, torch.full_like(v, smax**2))
    expected = (expected_gaussian_log_density(x0, smin, mu, v + smin**2) - mismatch).item()
    est, se = fitted["elbo"].mean().item(), fitted["elbo"].std().item() / math.sqrt(R)
    assert abs(est - expected) < 4 * se, (est, expected, se)
    ratio = fitted["diffusion"].std().item() / uniform["diffusion"].std().item()
    assert ratio < 0.7, ratio  # measured 0.56: the variance falls to about a third
    # the uniform proposal is the default estimator, draw for draw
    same = vdm_elbo(g, x0.repeat(8, 1), sigma_min=smin, sigma_max=smax, decoder="gaussian",
                    proposal=LogSNRProposal.uniform(-2 * math.log(smax), -2 * math.log(smin)),
                    generator=torch.Generator().manual_seed(3))
    default = vdm_elbo(g, x0.repeat(8, 1), sigma_min=smin, sigma_max=smax, decoder="gaussian",
                       generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(same["elbo"], default["elbo"], rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="covers log-SNR"):
        vdm_elbo(g, x0[None], sigma_min=0.1, sigma_max=smax, decoder="gaussian", proposal=q)


def test_log_snr_proposal_inverse_cdf_draws_follow_its_density(gen):
    from torchdiffusion.likelihood import LogSNRProposal

    q = LogSNRProposal(torch.tensor([-4.0, -1.0, 0.0, 6.0], dtype=torch.float64),
                       torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64))
    lam, dens = q.sample(torch.rand(200_000, generator=gen, dtype=torch.float64))
    shares = torch.histogram(lam, bins=q.edges).hist / len(lam)
    assert torch.allclose(shares, q.probs, atol=0.005)
    assert torch.allclose(dens, q.probs[torch.bucketize(lam, q.edges[1:-1], right=True)] /
                          (q.edges[1:] - q.edges[:-1])[torch.bucketize(lam, q.edges[1:-1], right=True)])
    with pytest.raises(ValueError, match="sum to 1"):
        LogSNRProposal(q.edges, torch.tensor([0.2, 0.5, 0.2], dtype=torch.float64))


def test_the_default_probe_is_rademacher_and_one_probe_reports_no_stderr(gmm):
    """One default probe draws +-1 entries (v^T v = d exactly, so only the off-diagonal Jacobian adds variance), and a
    single probe has no spread from which to estimate its standard error."""
    x, _ = gmm.sample(3, generator=torch.Generator().manual_seed(5))
    kw = dict(sigma_min=0.01, sigma_max=100.0, trace="hutchinson", return_stats=True)
    default, st = ode_log_likelihood(gmm, x, generator=torch.Generator().manual_seed(6), **kw)
    rad, _ = ode_log_likelihood(gmm, x, probe="rademacher", generator=torch.Generator().manual_seed(6), **kw)
    gauss, _ = ode_log_likelihood(gmm, x, probe="gaussian", generator=torch.Generator().manual_seed(6), **kw)
    assert torch.equal(default, rad) and not torch.equal(default, gauss)
    assert st["stderr"] is None
    _, st_exact = ode_log_likelihood(gmm, x, sigma_min=0.01, sigma_max=100.0, return_stats=True)
    assert torch.equal(st_exact["stderr"], torch.zeros(3, dtype=x.dtype))
