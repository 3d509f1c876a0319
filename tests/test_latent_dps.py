"""Latent DPS (DPS of Chung et al. 2023 through a decoder, `DecodedOperator`) against ground truth: with an identity
codec it is pixel DPS bit for bit; with a linear decoder W and the analytic mixture as the latent denoiser, the
measurement A W z is linear in z, so the exact posterior of z is the mixture posterior under A W
(`MixturePosterior`) and latent DPS must land as close to it as pixel DPS does on the composed problem (it equals
it up to rounding); Rout et al. 2023's gluing step by hand; the linear methods refused with the reason."""

import pytest
import torch

from test_inverse_methods import APPROXIMATE, DRAWS, NFE, errors, linear
from torchdiffusion.analytic import GaussianMixture
from torchdiffusion.inverse import (Blur, DecodedOperator, Matrix, MixturePosterior, check_latent_method,
                                    gaussian_kernel, latent_solve, solve)
from torchdiffusion.inverse.dps import solve_dps


class Identity:
    def encode(self, x):
        return x

    def decode(self, z):
        return z


class LinearCodec:
    """decode(z) = W z, encode(x) = E x on flat samples (W (n, d), E (d, n))."""

    def __init__(self, W, E=None):
        self.W, self.E = W, W.T if E is None else E
        self.latent_shape = (W.shape[1],)

    def decode(self, z):
        return z @ self.W.T

    def encode(self, x):
        return x @ self.E.T


def gen(seed=1):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("gamma", [0.0, 0.5])
def test_an_identity_codec_gives_pixel_dps_bit_for_bit(gamma):
    """Image-shaped mixture (1 x 4 x 4), noisy Gaussian blur: the same draws, to the last bit (the gluing term of an
    identity codec is 0 with gradient exactly 0)."""
    g = torch.Generator().manual_seed(0)
    gmm = GaussianMixture(torch.ones(3), torch.randn(3, 16, generator=g, dtype=torch.float64), 0.05)

    def D(x, sigma):
        return gmm(x.reshape(len(x), -1), sigma).reshape(x.shape)

    op = Blur(gaussian_kernel(3, 1.0))
    y = op(gmm.sample(4, generator=g)[0].reshape(4, 1, 4, 4)) + 0.05 * torch.randn(4, 1, 4, 4, generator=g,
                                                                                    dtype=torch.float64)
    pixel = solve(D, y, op, noise_std=0.05, method="dps", nfe=20, generator=gen())
    latent = solve(D, y, DecodedOperator(op, Identity(), (1, 4, 4)), noise_std=0.05, method="dps", nfe=20,
                   generator=gen(), gamma=gamma)
    assert torch.equal(latent, pixel)


def linear_decoder_problem():
    """`linear` (a 3-D latent mixture, two noisy measurements) behind a decoder W (5 x 3): the pixel operator
    A' = A W^+ measures the decoded image, so the composed A' W = A and the exact posterior of z is known."""
    gmm, op, noise, y = linear()
    W = torch.randn(5, 3, generator=gen(3), dtype=torch.float64)
    A_pixel = op.A @ torch.linalg.pinv(W)  # (2, 5)
    return gmm, Matrix(A_pixel), LinearCodec(W), op, noise, y


def test_latent_dps_through_a_linear_decoder_approaches_the_exact_posterior():
    gmm, A_pixel, codec, composed, noise, y = linear_decoder_problem()
    assert torch.allclose(A_pixel.A @ codec.W, composed.A, atol=1e-12)
    ys = y.expand(DRAWS, -1).contiguous()
    z = solve(gmm, ys, DecodedOperator(A_pixel, codec), noise_std=noise, method="dps", nfe=NFE, generator=gen())
    # the exact posterior of z | y under A W: latent DPS is as close to it as pixel DPS's measured bounds, and far
    # closer than the prior (what sampling without the measurement gives)
    post = MixturePosterior(gmm, composed, noise)
    tv, err = errors(gmm, post, y, z)
    max_tv, max_err = APPROXIMATE["dps"]["linear"]
    assert tv <= max_tv and err <= max_err, (tv, err)
    prior_tv, prior_err = errors(gmm, post, y, gmm.sample(DRAWS, generator=gen(5))[0])
    assert tv < 0.2 * prior_tv and err < prior_err, (tv, err, prior_tv, prior_err)  # 0.02 / 0.56, 0.36 / 0.76
    # the decoded draws fit the pixel measurement up to DPS's residual (~ zeta = 1; exact draws: 0.42)
    assert float((A_pixel(codec.decode(z)) - ys).norm(dim=1).mean()) < 1.2
    # pixel DPS on the equivalent problem (the composed operator on z): the same draws up to rounding
    direct = solve(gmm, ys, composed, noise_std=noise, method="dps", nfe=NFE, generator=gen())
    torch.testing.assert_close(z, direct, atol=1e-8, rtol=1e-8)


def test_latent_solve_decodes_its_draws():
    gmm, A_pixel, codec, composed, noise, y = linear_decoder_problem()
    ys = y.expand(6, -1).contiguous()
    x = latent_solve(gmm, codec, ys, A_pixel, noise_std=noise, nfe=10, generator=gen())
    z = solve(gmm, ys, DecodedOperator(A_pixel, codec), noise_std=noise, method="dps", nfe=10, generator=gen())
    assert x.shape == (6, 5) and torch.equal(x, codec.decode(z))


def test_the_gluing_step_by_hand():
    """One DPS step from sigma s to 0 with zeta = 0 and D(x) = x: x' = x - gamma sqrt(1 + s^2) grad ||x - E W x||^2,
    with grad = 2 (I - E W)^T (I - E W) x (Rout et al. 2023's gluing term through a linear codec)."""
    W = torch.randn(5, 3, generator=gen(2), dtype=torch.float64)
    E = torch.randn(3, 5, generator=gen(4), dtype=torch.float64)
    op = DecodedOperator(Matrix(torch.eye(5, dtype=torch.float64)), LinearCodec(W, E))
    x = torch.randn(2, 3, generator=gen(6), dtype=torch.float64)
    s, gamma = 0.7, 0.3
    out = solve_dps(lambda v, sigma: v, torch.zeros(2, 5, dtype=torch.float64), op, x,
                    torch.tensor([s, 0.0], dtype=torch.float64), noise_std=0.0, zeta=0.0, gamma=gamma)
    M = torch.eye(3, dtype=torch.float64) - E @ W
    want = x - gamma * (1 + s**2) ** 0.5 * 2 * x @ (M.T @ M).T
    torch.testing.assert_close(out, want, atol=1e-12, rtol=1e-12)
    with pytest.raises(ValueError, match="DecodedOperator only"):
        solve_dps(lambda v, sigma: v, x, Matrix(torch.eye(3, dtype=torch.float64)), x,
                  torch.tensor([s, 0.0], dtype=torch.float64), noise_std=0.0, gamma=gamma)


@pytest.mark.parametrize("method", ["replacement", "repaint", "pigdm", "ddrm", "smc"])
def test_methods_that_need_a_linear_operator_are_refused_with_the_reason(method):
    gmm, A_pixel, codec, composed, noise, y = linear_decoder_problem()
    with pytest.raises(ValueError, match=f"{method}.*needs a linear measurement operator.*not linear.*dps"):
        solve(gmm, y, DecodedOperator(A_pixel, codec), noise_std=noise, method=method, nfe=10)
    with pytest.raises(ValueError, match="latent diffusion model.*not linear in the latent.*--method dps"):
        check_latent_method(method, "run x", "upscale")
    check_latent_method("dps", "run x")  # passes


def test_a_decoder_without_gradients_is_refused():
    class NoGrad(LinearCodec):
        @torch.no_grad()
        def decode(self, z):
            return super().decode(z)

    gmm, A_pixel, codec, composed, noise, y = linear_decoder_problem()
    with pytest.raises(ValueError, match="does not pass gradients"):
        solve(gmm, y, DecodedOperator(A_pixel, NoGrad(codec.W)), noise_std=noise, method="dps", nfe=4)


@pytest.mark.parametrize("kind", ["kl", "vq"])
def test_a_latent_codec_decodes_differentiably_to_its_own_decode(tmp_path, kind):
    """LatentCodec.differentiable_decode / _encode: the values of decode / encode (VQ codes snapped), with gradients
    (straight through the VQ snap)."""
    from torchdiffusion.latent.autoencoder import Autoencoder, AutoencoderConfig
    from torchdiffusion.latent.codec import LatentCodec

    from test_latent_train import AE_TINY

    torch.manual_seed(0)
    codec = LatentCodec(Autoencoder(AutoencoderConfig.from_dict({**AE_TINY["model"], "kind": kind})), 1.7)
    z = torch.randn(2, *codec.latent_shape, requires_grad=True)
    x = codec.differentiable_decode(z)
    torch.testing.assert_close(x.detach(), codec.decode(z.detach()), atol=1e-6, rtol=1e-5)
    (g,) = torch.autograd.grad(x.sum(), z)
    assert torch.isfinite(g).all() and float(g.abs().sum()) > 0
    img = torch.rand(2, *codec.image_shape) * 2 - 1
    torch.testing.assert_close(codec.differentiable_encode(img).detach(), codec.encode(img), atol=1e-6, rtol=1e-5)
