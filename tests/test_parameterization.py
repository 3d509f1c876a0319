"""Conversions between prediction targets round-trip exactly; the wrapper with an oracle backbone is exact."""

import pytest
import torch
from torch import nn

from torchdiffusion.denoiser import ModelDenoiser
from torchdiffusion.parameterization import edm_scalings, target, to_x0
from torchdiffusion.processes import EDM, VE, DiscreteVP, Flow, SubVP, VPLinear
from torchdiffusion.schedules import make_betas

PREDS = ["eps", "x0", "v", "score", "velocity"]


@pytest.mark.parametrize("pred", PREDS)
def test_targets_round_trip_for_arbitrary_alpha_sigma(pred, gen):
    x0 = torch.randn(64, 3, generator=gen, dtype=torch.float64)
    eps = torch.randn(64, 3, generator=gen, dtype=torch.float64)
    a = torch.rand(64, 1, generator=gen, dtype=torch.float64) + 0.1
    s = torch.rand(64, 1, generator=gen, dtype=torch.float64) + 0.1  # not variance preserving
    da, ds = -torch.rand(64, 1, generator=gen, dtype=torch.float64), torch.rand(64, 1, generator=gen, dtype=torch.float64)
    xt = a * x0 + s * eps
    y = target(pred, x0, eps, a, s, da, ds)
    assert torch.allclose(to_x0(pred, y, xt, a, s, da, ds), x0, atol=1e-12)


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
        return target(self.pred, x0, eps, a, s, self.p.d_alpha(t)[:, None], self.p.d_sigma(t)[:, None])


PROCESSES = [VPLinear(), SubVP(), VE(0.01, 50.0), EDM(), Flow(), DiscreteVP(make_betas("cosine", 1000))]


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
