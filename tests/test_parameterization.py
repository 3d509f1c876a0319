"""Conversions between prediction targets round-trip exactly; the wrapper with an oracle backbone is exact."""

import pytest
import torch
from torch import nn

from torchdiffusion.model_denoiser import ModelDenoiser
from torchdiffusion.parameterization import edm_scalings
from torchdiffusion.registry import PREDICTIONS
from torchdiffusion.processes import EDM, VE, DiscreteVP, Flow, SubVP, VPLinear
from torchdiffusion.schedules import make_betas

PREDS = ["eps", "x0", "v", "score", "velocity"]


PROCESSES = [VPLinear(), SubVP(), VE(0.01, 50.0), EDM(), Flow(), DiscreteVP(make_betas("cosine", 1000))]


def random_times(process, n, gen):
    if process.discrete:
        return torch.randint(0, process.T, (n,), generator=gen).double()
    return process.t_min + torch.rand(n, generator=gen, dtype=torch.float64) * (process.t_max - process.t_min) * 0.98


@pytest.mark.parametrize("process", PROCESSES, ids=lambda p: type(p).__name__)
@pytest.mark.parametrize("pred", PREDS + ["edm"])
def test_targets_round_trip_through_to_x0(pred, process, gen):
    x0 = torch.randn(64, 3, generator=gen, dtype=torch.float64)
    eps = torch.randn(64, 3, generator=gen, dtype=torch.float64)
    t = random_times(process, 64, gen)
    xt = process.marginal(x0, t, eps)
    p = PREDICTIONS[pred](process)
    assert torch.allclose(p.to_x0(p.target(x0, eps, xt, t), xt, t), x0, atol=1e-8)


@pytest.mark.parametrize("process", PROCESSES, ids=lambda p: type(p).__name__)
@pytest.mark.parametrize("pred", PREDS + ["edm"])
def test_error_factor_is_the_squared_slope_of_x0_in_the_output(pred, process, gen):
    # r(t) = ||d out||^2 / ||d x0||^2 for a perturbation of the output: measured through to_x0, not by formula
    t = random_times(process, 16, gen)
    xt = torch.randn(16, 3, generator=gen, dtype=torch.float64)
    out = torch.randn(16, 3, generator=gen, dtype=torch.float64)
    d = 1e-4 * torch.randn(16, 3, generator=gen, dtype=torch.float64)
    p = PREDICTIONS[pred](process)
    dx0 = p.to_x0(out + d, xt, t) - p.to_x0(out, xt, t)
    assert torch.allclose(p.error_factor(t), d.pow(2).sum(1) / dx0.pow(2).sum(1), rtol=1e-6)


@pytest.mark.parametrize("process", [VPLinear(), SubVP(), Flow(), EDM()], ids=lambda p: type(p).__name__)
def test_velocity_target_is_the_time_derivative_of_the_marginal(process, gen):
    # u = d/dt (alpha(t) x0 + sigma(t) eps) for fixed x0, eps: a central finite difference of the closed forms
    x0 = torch.randn(32, 2, generator=gen, dtype=torch.float64)
    eps = torch.randn(32, 2, generator=gen, dtype=torch.float64)
    t = process.t_min + (0.05 + 0.9 * torch.rand(32, generator=gen, dtype=torch.float64)) * (process.t_max - process.t_min)
    h = 1e-6 * (process.t_max - process.t_min)
    fd = (process.marginal(x0, t + h, eps) - process.marginal(x0, t - h, eps)) / (2 * h)
    u = PREDICTIONS["velocity"](process).target(x0, eps, process.marginal(x0, t, eps), t)
    assert torch.allclose(u, fd, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("process", [VPLinear(), DiscreteVP(make_betas("linear", 1000))], ids=lambda p: type(p).__name__)
def test_v_target_is_the_rotation_rate_of_the_vp_state(process, gen):
    # Salimans & Ho 2022, sec. 4: with alpha = cos(phi), sigma = sin(phi), v = d x_t / d phi = cos(phi) eps - sin(phi) x0
    x0 = torch.randn(32, 2, generator=gen, dtype=torch.float64)
    eps = torch.randn(32, 2, generator=gen, dtype=torch.float64)
    t = random_times(process, 32, gen)
    phi = torch.atan2(process.sigma(t), process.alpha(t))[:, None]
    h = 1e-6
    fd = ((torch.cos(phi + h) * x0 + torch.sin(phi + h) * eps) - (torch.cos(phi - h) * x0 + torch.sin(phi - h) * eps)) / (2 * h)
    v = PREDICTIONS["v"](process).target(x0, eps, process.marginal(x0, t, eps), t)
    assert torch.allclose(v, fd, rtol=1e-6, atol=1e-8)


def test_edm_scalings_reconstruct_x0_from_the_F_target(gen):
    sigma = torch.exp(torch.randn(100, generator=gen, dtype=torch.float64))
    x0 = torch.randn(100, generator=gen, dtype=torch.float64)
    x = x0 + sigma * torch.randn(100, generator=gen, dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = edm_scalings(sigma)
    F = (x0 - c_skip * x) / c_out
    assert torch.allclose(c_skip * x + c_out * F, x0)
    # unit variance of the network input and of the training target for sigma_data-distributed data
    assert torch.allclose(c_in**2 * (sigma**2 + 0.25), torch.ones_like(sigma))
    assert torch.allclose(c_out**2 * c_skip, c_skip * sigma**2 * 0.25 / (sigma**2 + 0.25))


class OracleBackbone(nn.Module):
    """Predicts the exact raw target of the mixture by inverting the wrapper's noise input."""

    def __init__(self, gmm, process, prediction, noise_input, sigma_data=0.5):
        super().__init__()
        self.gmm, self.p, self.pred, self.ni, self.sd = gmm, process, prediction, noise_input, sigma_data

    def forward(self, xin, c):
        c = c.double()
        if self.ni == "t":
            t = c
        elif self.ni == "1000t":
            t = c / 1000
        else:
            t = self.p.t_of_sigma_ve(torch.exp(4 * c))
        a, s = self.p.alpha(t)[:, None], self.p.sigma(t)[:, None]
        if self.pred == "edm":
            c_skip, c_out, c_in, _ = edm_scalings(self.p.sigma_ve(t), self.sd)
            x = xin / c_in[:, None]
            x0 = self.gmm(x, self.p.sigma_ve(t))
            return (x0 - c_skip[:, None] * x) / c_out[:, None]
        x0 = self.gmm(xin / a, s[:, 0] / a[:, 0])
        eps = (xin - a * x0) / s
        return PREDICTIONS[self.pred](self.p).target(x0, eps, xin, t)


@pytest.mark.parametrize("process", PROCESSES, ids=lambda p: type(p).__name__)
@pytest.mark.parametrize("pred", PREDS + ["edm"])
def test_wrapper_with_oracle_backbone_is_the_exact_denoiser(process, pred, gmm, gen):
    model = ModelDenoiser(nn.Identity(), process, pred)
    model.backbone = OracleBackbone(gmm, process, pred, model.noise_input)
    if isinstance(process, DiscreteVP):
        sig = process.sigmas_ve[torch.randint(0, 1000, (32,), generator=gen)]
    else:
        t = process.t_min + torch.rand(32, generator=gen, dtype=torch.float64) * (process.t_max - process.t_min) * 0.98
        sig = process.sigma_ve(t)
    x = gmm.sample(32, generator=gen)[0] + sig[:, None] * torch.randn(32, 2, generator=gen, dtype=torch.float64)
    assert torch.allclose(model(x, sig), gmm(x, sig), rtol=1e-6, atol=1e-6)


def test_discrete_model_rounds_sigma_to_its_grid():
    p = DiscreteVP(make_betas("linear", 100))
    seen = []

    class Spy(nn.Module):
        def forward(self, x, c):
            seen.append(c.clone())
            return torch.zeros_like(x)

    model = ModelDenoiser(Spy(), p, "eps")
    s = p.sigmas_ve[[10, 50]] * torch.tensor([1.01, 0.99], dtype=torch.float64)
    model(torch.zeros(2, 2, dtype=torch.float64), s)
    assert seen[0].tolist() == [10.0, 50.0]
    assert model.sigma_min == pytest.approx(p.sigmas_ve[0].item()) and model.sigma_max == pytest.approx(p.sigmas_ve[-1].item())


def test_unknown_prediction_is_a_clear_error():
    with pytest.raises(ValueError, match="prediction"):
        ModelDenoiser(nn.Identity(), VPLinear(), "epsilon")
