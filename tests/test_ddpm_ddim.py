"""DDPM and DDIM against ground truth (an exact mixture denoiser) and against diffusers as an oracle."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from torchdiffusion.model_denoiser import ModelDenoiser
from torchdiffusion.processes import DiscreteVP
from torchdiffusion.sampling import grids, sample, sample_ddim, sample_ddpm
from torchdiffusion.schedules import make_betas


def mode_counts(gmm, x):
    return torch.bincount(gmm.responsibilities(x, 0.0).argmax(1), minlength=len(gmm.weights)).double()


def test_ddpm_ancestral_sampling_reproduces_the_mixture(gmm, gen):
    p = DiscreteVP(make_betas("linear", 1000))
    n = 20_000
    x = torch.randn(n, 2, generator=gen, dtype=torch.float64) / p.alpha(torch.tensor(999.0))
    out = sample_ddpm(gmm, x, grids.discrete_sigmas(p.sigmas_ve), generator=gen)
    ref, _ = gmm.sample(200_000, generator=gen)
    # moments within a few standard errors
    se = ref.std(0) / math.sqrt(n)
    assert ((out.mean(0) - gmm.mean()).abs() < 5 * se).all()
    assert torch.allclose(torch.cov(out.T), gmm.covariance(), atol=0.06)
    # mode weights: chi-square test against the true weights (2 dof, p > 0.001)
    counts = mode_counts(gmm, out)
    expected = n * mode_counts(gmm, ref) / len(ref)
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 13.8
    # the average exact log-density of samples equals the data's (a likelihood check of the whole law)
    assert gmm.log_prob(out).mean().item() == pytest.approx(gmm.log_prob(ref).mean().item(), abs=0.03)


def pf_ode_reference(gmm, x, sigma_max, sigma_min):
    """The exact probability-flow map from sigma_max to sigma_min: dx/dlog(sigma) = x - D(x, sigma), DOP853."""
    from scipy.integrate import solve_ivp

    shape = x.shape

    def rhs(u, y):
        xx = torch.from_numpy(y).reshape(shape)
        return (xx - gmm(xx, math.exp(u))).reshape(-1).numpy()

    sol = solve_ivp(rhs, (math.log(sigma_max), math.log(sigma_min)), x.reshape(-1).numpy(),
                    method="DOP853", rtol=1e-12, atol=1e-12)
    return torch.from_numpy(sol.y[:, -1]).reshape(shape)


def test_ddim_eta0_converges_to_the_exact_flow_map_at_order_one(gmm, gen):
    smax, smin = 80.0, 0.002
    x = torch.randn(256, 2, generator=gen, dtype=torch.float64) * smax
    ref = pf_ode_reference(gmm, x, smax, smin)
    ns = [16, 32, 64, 128]
    errs = [(sample_ddim(gmm, x, grids.karras(n, smin, smax)[:-1]) - ref).pow(2).sum(1).sqrt().mean().item()
            for n in ns]
    slope = np.polyfit(np.log(ns), np.log(errs), 1)[0]
    assert -1.3 < slope < -0.7, (errs, slope)
    assert errs[-1] < 0.05


def test_ddim_eta1_is_ddpm_with_beta_tilde_and_eta0_is_euler(gmm):
    p = DiscreteVP(make_betas("linear", 1000))
    s = grids.discrete_sigmas(p.sigmas_ve, 50, "trailing")
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * s[0]
    a = sample_ddim(gmm, x, s, eta=1.0, generator=torch.Generator().manual_seed(3))
    b = sample_ddpm(gmm, x, s, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(a, b, atol=1e-12)
    # DDIM(eta=0) = Euler on dx/dsigma = (x - D) / sigma
    y = x.clone()
    for s0, s1 in zip(s[:-1].tolist(), s[1:].tolist()):
        y = y + (s1 - s0) * (y - gmm(y, s0)) / s0
    assert torch.allclose(sample_ddim(gmm, x, s), y, atol=1e-12)


class EpsFromMixture(nn.Module):
    """A discrete-time eps-network built from the exact mixture: eps(x_t, t) for a DDPM table."""

    def __init__(self, gmm, process):
        super().__init__()
        self.gmm, self.p = gmm, process

    def forward(self, xt, t):
        t = t.double()
        a, s = self.p.alpha(t)[:, None], self.p.sigma(t)[:, None]
        x0 = self.gmm(xt.double() / a, s[:, 0] / a[:, 0])
        return ((xt.double() - a * x0) / s).to(xt.dtype)


def same_table(sched, name):
    """Our process, with diffusers' scheduler switched to the same float64 table (it keeps float32 by default,
    whose 1 - abar_t / abar_{t-1} loses three digits at small beta)."""
    p = DiscreteVP(make_betas(name, sched.config.num_train_timesteps))
    assert torch.allclose(sched.betas.double(), p.betas, rtol=1e-5)
    sched.betas, sched.alphas, sched.alphas_cumprod = p.betas, 1 - p.betas, p.alphas_cumprod
    return p


@pytest.mark.parametrize("variance", ["beta_tilde", "beta"])
def test_ddpm_matches_diffusers_scheduler_step_by_step(gmm, variance):
    diffusers = pytest.importorskip("diffusers")
    T = 1000
    sched = diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule="linear", clip_sample=False,
                                    variance_type="fixed_small" if variance == "beta_tilde" else "fixed_large")
    p = same_table(sched, "linear")
    net = EpsFromMixture(gmm, p)
    model = ModelDenoiser(net, p, "eps")
    sched.set_timesteps(T)
    xT = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    g = torch.Generator().manual_seed(5)
    x = xT.clone()
    for t in sched.timesteps:
        eps = net(x, t.expand(16).double())
        x = sched.step(eps, t, x, generator=g).prev_sample
    ours = sample_ddpm(model, xT / p.alpha(torch.tensor(T - 1.0)), grids.discrete_sigmas(p.sigmas_ve), variance=variance,
                       generator=torch.Generator().manual_seed(5))
    assert torch.allclose(ours, x, atol=1e-6), (ours - x).abs().max()


# diffusers' DDIM always steps from t to t - T // n, which is the next grid point only for leading and
# trailing spacing; with "linspace" it leaves the grid (we step between grid points), so that is not compared.
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_ddim_matches_diffusers_scheduler(gmm, spacing, eta):
    diffusers = pytest.importorskip("diffusers")
    T, n = 1000, 25
    sched = diffusers.DDIMScheduler(num_train_timesteps=T, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                    clip_sample=False,
                                    timestep_spacing=spacing, set_alpha_to_one=True)
    p = same_table(sched, "scaled_linear")
    net = EpsFromMixture(gmm, p)
    model = ModelDenoiser(net, p, "eps")
    sched.set_timesteps(n)
    xT = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    g = torch.Generator().manual_seed(7)
    x = xT.clone()
    for t in sched.timesteps:
        x = sched.step(net(x, t.expand(16).double()), t, x, eta=eta, generator=g).prev_sample
    sig = grids.discrete_sigmas(p.sigmas_ve, n, spacing)
    assert torch.equal(grids.respaced_timesteps(T, n, spacing), sched.timesteps)
    t0 = float(sched.timesteps[0])
    ours = sample_ddim(model, xT / p.alpha(torch.tensor(t0)), sig, eta=eta, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(ours, x, atol=1e-6), (ours - x).abs().max()


def test_sample_entry_point_meets_budget_and_preserves_dtype(gmm):
    calls = []

    def D(x, sigma):
        calls.append(sigma.shape)
        return gmm(x, sigma)

    x = torch.randn(8, 2, dtype=torch.float64) * 80
    out = sample(D, x, method="ddim", nfe=12, sigma_min=0.002, sigma_max=80.0)
    assert len(calls) <= 12 and all(c == (8,) for c in calls) and out.dtype == torch.float64
    out32 = sample(D, x.float(), method="ddim", nfe=5, sigma_min=0.002, sigma_max=80.0)
    assert out32.dtype == torch.float32


def test_bad_grids_are_rejected(gmm):
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="decreasing"):
        sample_ddim(gmm, x, torch.tensor([1.0, 2.0, 0.0]))
    with pytest.raises(ValueError, match="unknown sampler"):
        sample(gmm, x, method="nope")
