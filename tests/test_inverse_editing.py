"""Editing on the analytic mixture: DDIM inversion then reconstruction converges as NFE grows (the exact flow map is
invertible), SDEdit at strength 0 returns the input and at strength 1 is sampling from noise, slerp and
interpolation reach their endpoints."""

import pytest
import torch

from torchdiffusion.inverse.editing import ddim_invert, interpolate, sdedit, slerp, strength_sigma
from torchdiffusion.sampling import sample


def test_inversion_reconstruction_error_falls_as_nfe_grows(gmm):
    x0, _ = gmm.sample(200, generator=torch.Generator().manual_seed(0))
    errors = [float(ddim_invert(gmm, x0, nfe=n).error.mean()) for n in (5, 10, 20, 40, 80)]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.25 * errors[1], errors  # about order 1: x8 the steps, well under a quarter the error


def test_heun_inversion_converges_faster_than_ddim(gmm):
    """Heun's trapezoid run up the grid and Heun's sampler run down it: at equal calls, a smaller error falling
    faster than DDIM's (order 2 against 1)."""
    x0, _ = gmm.sample(200, generator=torch.Generator().manual_seed(0))
    heun = [float(ddim_invert(gmm, x0, nfe=n, method="heun").error.mean()) for n in (20, 40, 80, 160)]
    ddim = [float(ddim_invert(gmm, x0, nfe=n).error.mean()) for n in (20, 40, 80, 160)]
    assert all(a > b for a, b in zip(heun, heun[1:])), heun
    assert heun[-1] < 0.5 * ddim[-1] and heun[-1] / heun[1] < ddim[-1] / ddim[1], (heun, ddim)
    with pytest.raises(ValueError, match="inversion runs ddim, heun backwards"):
        ddim_invert(gmm, x0, method="dpmpp_2m")


def test_inverted_noise_has_the_noisy_marginal(gmm):
    x0, _ = gmm.sample(4000, generator=torch.Generator().manual_seed(1))
    z = ddim_invert(gmm, x0, nfe=200, sigma_max=10.0, reconstruct=False).noise  # (at nfe = 40, 10 % too wide)
    # the flow map carries p_data to p_sigma_max = data + N(0, 100 I): mean and variance per coordinate
    torch.testing.assert_close(z.mean(0), gmm.mean(), atol=0.4, rtol=0)
    torch.testing.assert_close(z.var(0), torch.diagonal(gmm.covariance()) + 100, atol=0, rtol=0.08)


def test_sdedit_strength_zero_returns_the_input_and_one_samples_from_noise(gmm):
    x0 = torch.tensor([[-2.0, 0.5], [1.5, 1.5]], dtype=torch.float64).repeat(500, 1)
    assert torch.equal(sdedit(gmm, x0, 0.0), x0)
    full = sdedit(gmm, x0, 1.0, nfe=30, generator=torch.Generator().manual_seed(2))
    z = torch.randn(x0.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ref = sample(gmm, 80.0 * z, method="ddim", nfe=30)
    gap = (full - ref).norm(dim=1)  # the starts differ by x0, shrunk by the flow's ~sigma_data / 80 (except near
    assert float(gap.median()) < 0.05 and float((gap > 0.2).double().mean()) < 0.02  # the boundary between modes)
    # stochastic sampler too: strength 1 forgets the input, its draws follow the prior's weights
    draws = sdedit(gmm, x0, 1.0, method="euler_ancestral", nfe=30, generator=torch.Generator().manual_seed(3))
    freq = torch.bincount(gmm.responsibilities(draws, 0.0).argmax(1), minlength=3).double() / len(draws)
    assert float((freq - gmm.weights).abs().sum()) / 2 < 0.06


def test_sdedit_moves_further_from_the_input_as_strength_grows(gmm):
    x0 = torch.tensor([[-2.0, 0.5]], dtype=torch.float64).repeat(400, 1)
    dist = [float((sdedit(gmm, x0, s, nfe=20, generator=torch.Generator().manual_seed(4)) - x0).norm(dim=1).mean())
            for s in (0.1, 0.4, 0.7, 1.0)]
    assert all(a < b for a, b in zip(dist, dist[1:])), dist
    assert strength_sigma(1.0, 0.002, 80.0) == pytest.approx(80.0) and strength_sigma(0.0, 0.002, 80.0) == 0.0
    with pytest.raises(ValueError, match="strength"):
        sdedit(gmm, x0, 1.5)


def test_slerp_and_interpolation_reach_their_endpoints(gmm):
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(3, 4, generator=g, dtype=torch.float64)
    torch.testing.assert_close(slerp(a, b, 0.0), a)
    torch.testing.assert_close(slerp(a, b, 1.0), b)
    unit_a, unit_b = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    torch.testing.assert_close(slerp(unit_a, unit_b, 0.3).norm(dim=1), torch.ones(3, dtype=torch.float64))
    x_a, x_b = torch.tensor([[-2.0, 0.5]], dtype=torch.float64), torch.tensor([[1.5, 1.5]], dtype=torch.float64)
    path = interpolate(gmm, x_a, x_b, [0.0, 0.5, 1.0], nfe=40)
    rec = ddim_invert(gmm, torch.cat([x_a, x_b]), nfe=40).reconstruction
    assert path.shape == (3, 2)
    torch.testing.assert_close(path[[0, 2]], rec)


class TableMixture:
    """The mixture's exact denoiser posing as a discrete-time model: a cosine-like table with a far top level."""

    def __init__(self, gmm):
        self.gmm = gmm
        self.sigma_table = torch.cat([torch.logspace(-2, 2, 200, dtype=torch.float64), torch.tensor([2e4])])
        self.sigma_min, self.sigma_max = float(self.sigma_table[0]), float(self.sigma_table[-1])

    def __call__(self, x, sigma):
        return self.gmm(x, sigma)


def test_editing_on_a_discrete_table_starts_at_the_strength_and_skips_the_far_top_level(gmm):
    """SDEdit at a small strength stays near its input (its grid starts at the strength's level, not the table's
    top), and inversion leaves out a top level 200 times the next (a step across it would amplify D's error)."""
    D = TableMixture(gmm)
    x0, _ = gmm.sample(400, generator=torch.Generator().manual_seed(6))
    near = sdedit(D, x0, 0.2, nfe=20, generator=torch.Generator().manual_seed(7))
    assert float((near - x0).norm(dim=1).mean()) < 0.5
    err = float(ddim_invert(D, x0, nfe=40).error.mean())
    across_the_gap = float(ddim_invert(D, x0, nfe=40, sigma_max=2e4).error.mean())  # measured 0.15 and 0.34
    assert err < 0.6 * across_the_gap, (err, across_the_gap)
