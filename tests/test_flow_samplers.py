"""Every registered ODE sampler on a flow model at one, two and three calls, against the exact probability-flow map:
the analytic mixture posed as a linear (and a trigonometric) flow with an exact velocity network, so that sigma_max
is the flow's t_max / (1 - t_max) ~ 1e4 and every conversion of ModelDenoiser is exercised."""

from __future__ import annotations

import math

import pytest
import torch

from torchdiffusion.analytic import ExactVelocity, GaussianMixture
from torchdiffusion.model_denoiser import ModelDenoiser
from torchdiffusion.processes import Flow, FlowCosine, GaussianProcess
from torchdiffusion.sampling import METHODS, budget_grid, grids, sample

from test_ddpm_ddim import pf_ode_reference

ODE = sorted(name for name, m in METHODS.items() if m.kind == "ODE")


@pytest.fixture(scope="module", params=[Flow, FlowCosine], ids=["flow", "flow_cosine"])
def flow_case(request):
    """(model, start x at sigma_max, the exact map of x to sigma = 0) for one flow process."""
    means = torch.tensor([[-2.0, 0.5], [1.5, 1.5], [0.5, -2.0]], dtype=torch.float64)
    var = torch.tensor([[0.3, 0.1], [0.05, 0.2], [0.15, 0.15]], dtype=torch.float64)
    gmm = GaussianMixture(torch.tensor([0.5, 0.3, 0.2]), means, var)
    process = request.param()
    model = ModelDenoiser(ExactVelocity(gmm, process), process, "velocity")
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * process.prior_std_ve()
    exact = gmm(pf_ode_reference(gmm, x, model.sigma_max, model.sigma_min), model.sigma_min)
    return model, x, exact


def test_the_exact_velocity_model_is_the_mixture_denoiser(flow_case, gmm):
    model, x, _ = flow_case
    for sigma in (model.sigma_max, 3.0, 0.1, model.sigma_min):
        assert torch.allclose(model(x / 1000 * 3, sigma), gmm(x / 1000 * 3, sigma), atol=1e-9)


def test_the_knee_grid_of_one_level_starts_at_sigma_max():
    """The exponential grid's endpoint fix once overwrote its only level with sigma_min, so every method on that grid
    (DPM-Solver++(2M), (3M), UniPC, iPNDM) returned the start noise at one call."""
    for knee in (math.inf, 5.0):
        assert grids.exponential(1, 0.02, 9999.0, knee=knee).tolist() == [9999.0, 0.0]


@pytest.mark.parametrize("name", ODE)
def test_one_call_of_every_ode_sampler_is_the_one_step_ddim_answer(flow_case, name):
    model, x, _ = flow_case
    out = sample(model, x, method=name, nfe=1)
    assert torch.allclose(out, model(x, model.sigma_max), atol=1e-9), name  # DDIM to 0: x0_hat at sigma_max


@pytest.mark.parametrize("name", ODE)
def test_ode_samplers_on_a_flow_approach_the_exact_map_as_calls_grow(flow_case, name):
    """Error to the exact map at 1, 2, 3 calls is finite and never grows, and 8 calls beat 1."""
    model, x, exact = flow_case
    err = {n: float((sample(model, x, method=name, nfe=n) - exact).norm(dim=1).mean()) for n in (1, 2, 3, 8)}
    assert all(math.isfinite(e) for e in err.values()), (name, err)
    assert err[2] <= err[1] + 1e-9 and err[3] <= err[2] + 1e-9, (name, err)
    assert err[8] < err[1], (name, err)
    if METHODS[name].evals_per_step is not None:  # the budget's grid starts at the flow's sigma_max
        assert float(budget_grid(model, name, 2)[0]) == pytest.approx(model.sigma_max)


def test_dopri5_below_one_full_step_is_dpmpp_2m_on_its_budget_grid(flow_case):
    """With fewer calls than a Dormand-Prince step (7), the budget is 2M's on `sample`'s grid for it, the first call
    (D at sigma_max) reused: it once went log-uniform down to sigma_min, and 2 calls gave the 1-call answer again."""
    model, x, _ = flow_case
    for n in (2, 3, 5):
        assert torch.allclose(sample(model, x, method="dopri5", nfe=n), sample(model, x, method="dpmpp_2m", nfe=n),
                              atol=1e-9), n
