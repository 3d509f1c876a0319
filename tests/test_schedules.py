"""Beta schedules against the formulas that define them."""

import math

import pytest
import torch

from torchdiffusion.schedules import alphas_cumprod, logsnr, make_betas, rescale_zero_terminal_snr


def test_cosine_alpha_bar_follows_the_cosine_formula():
    T, s = 1000, 0.008
    ab = alphas_cumprod(make_betas("cosine", T))
    t = torch.arange(1, T + 1, dtype=torch.float64) / T
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2 / math.cos(s / (1 + s) * math.pi / 2) ** 2
    # identical until the 0.999 clip bites at the very end
    assert torch.allclose(ab[:-5], f[:-5], rtol=1e-10)
    assert (make_betas("cosine", T) <= 0.999).all()


def test_scaled_linear_endpoints_and_linear_endpoints():
    b = make_betas("scaled_linear", 1000)
    assert b[0].item() == pytest.approx(0.00085) and b[-1].item() == pytest.approx(0.012)
    assert b.sqrt().diff().std() < 1e-12
    b = make_betas("linear", 1000)
    assert b[0].item() == pytest.approx(1e-4) and b[-1].item() == pytest.approx(0.02)


def test_logsnr_linear_schedule_is_linear_in_logsnr():
    ab = alphas_cumprod(make_betas("logsnr_linear", 100, logsnr_max=8.0, logsnr_min=-8.0))
    lam = logsnr(ab)
    assert torch.allclose(lam.diff(), torch.full((99,), -16.0 / 100, dtype=torch.float64), atol=1e-9)


@pytest.mark.parametrize("name", ["linear", "scaled_linear", "cosine", "sigmoid", "logsnr_linear"])
def test_every_schedule_is_a_valid_decreasing_alpha_bar(name):
    b = make_betas(name, 500)
    assert b.shape == (500,) and ((b > 0) & (b < 1)).all()
    assert (alphas_cumprod(b).diff() < 0).all()


def test_zero_terminal_snr_rescale():
    b = make_betas("scaled_linear", 1000)
    r = rescale_zero_terminal_snr(b)
    ab, ab_r = alphas_cumprod(b), alphas_cumprod(r)
    assert ab_r[-1].item() == pytest.approx(0.0, abs=1e-20)
    assert ab_r[0].item() == pytest.approx(ab[0].item(), rel=1e-12)
    # sqrt(abar) is an affine map of the original
    x, y = ab.sqrt(), ab_r.sqrt()
    slope = (y[-1] - y[0]) / (x[-1] - x[0])
    assert torch.allclose(y, y[0] + slope * (x - x[0]), atol=1e-12)


def test_unknown_schedule_names_the_choices():
    with pytest.raises(ValueError, match="cosine"):
        make_betas("cosin", 10)
