"""The last step to sigma = 0: UniPC extrapolates its last D's to sigma = 0 in sigma^2 (`unipc.final_denoise`), which
on a DDPM table that ends high (Stable Diffusion's scaled-linear table: lowest level 0.029) is most of the error."""

import math

import pytest
import torch

from torchdiffusion.processes import DiscreteVP
from torchdiffusion.sampling import sample
from torchdiffusion.sampling.unipc import final_denoise
from torchdiffusion.schedules import make_betas


def test_final_denoise_is_exact_for_a_polynomial_in_sigma_squared():
    """D(sigma) = a + b sigma^2 (+ c sigma^4): two points (three) recover a exactly; one point is D itself."""
    a, b, c = (torch.tensor(v, dtype=torch.float64) for v in ([1.0, -2.0], [0.5, 3.0], [-4.0, 2.0]))
    sig = [0.03, 0.041, 0.05]
    quad = [(s, a + b * s**2 + c * s**4) for s in sig]
    lin = [(s, a + b * s**2) for s in sig]
    assert torch.allclose(final_denoise(lin[:2]), a, atol=1e-12)
    assert torch.allclose(final_denoise(quad), a, atol=1e-12)
    assert torch.equal(final_denoise(quad[:1]), quad[0][1])
    assert not torch.allclose(final_denoise(quad[:2]), a, rtol=0, atol=1e-7)  # leaves c sigma_0^2 sigma_1^2: 6e-6


def test_unipc_rejects_an_unknown_final_order():
    x = torch.ones(2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="final_order"):
        sample(lambda x, s: x * 0, x, method="unipc", nfe=5, sigma_min=0.1, sigma_max=1.0, final_order=4)


class NarrowGaussian:
    """N(0, tau^2 I) behind Stable Diffusion's scaled-linear DDPM table (beta 0.00085..0.012, T = 1000): the exact
    denoiser and the exact probability-flow map x(0) = x tau / sqrt(tau^2 + sigma^2)."""

    table = DiscreteVP(make_betas("scaled_linear", 1000, beta_start=0.00085, beta_end=0.012)).sigmas_ve.double()
    sigma_table, sigma_min, sigma_max = table, float(table[0]), float(table[-1])

    def __init__(self, tau: float):
        self.tau = self.sigma_data = tau

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        assert torch.isin(sigma.double(), self.table).all()  # a discrete model is asked at its own levels only
        return self.tau**2 / (self.tau**2 + sigma[:, None] ** 2) * x


@pytest.mark.parametrize("nfe", [20, 50])
def test_the_default_resolves_a_component_near_the_tables_lowest_level(nfe):
    """std 0.05 against the table's lowest level 0.029: landing on D(x, 0.029) leaves 13.6 % of |x(0)| as error at
    any budget (the old default's floor, issue 18's 29x at NFE 50 on this table); the extrapolated last step of the
    default rule leaves under 4 % (1.8 % measured)."""
    m = NarrowGaussian(0.05)
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * m.sigma_max
    exact = x * m.tau / math.sqrt(m.tau**2 + m.sigma_max**2)
    rel = lambda y: float((y - exact).norm(dim=1).mean() / exact.norm(dim=1).mean())  # noqa: E731
    assert rel(sample(m, x, method="unipc", nfe=nfe, final_order=1)) > 0.12  # the old last step, for contrast
    assert rel(sample(m, x, method="unipc", nfe=nfe)) < 0.04
