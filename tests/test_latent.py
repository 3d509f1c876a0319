"""The latent-diffusion autoencoders against their formulas: codec shapes, the Gaussian KL against Monte Carlo, the
EMA codebook update against a hand computation, the straight-through gradient, the adaptive GAN weight against
gradients worked out by hand, the GAN losses and the perceptual distance."""

import math

import pytest
import torch

from torchdiffusion.latent import Autoencoder, AutoencoderConfig, DiagonalGaussian, LatentCodec
from torchdiffusion.latent.discriminator import PatchDiscriminator, discriminator_loss, generator_loss
from torchdiffusion.latent.losses import PerceptualLoss, adaptive_weight, reconstruction_loss
from torchdiffusion.latent.quantize import LAPLACE_EPS, VectorQuantizerEMA


@pytest.mark.parametrize("kind", ["kl", "vq"])
@pytest.mark.parametrize("channels,size,mult,latent", [(1, 28, (1, 2, 2), 7), (3, 16, (1, 2), 8), (1, 8, (1,), 8)])
def test_encode_decode_shapes(kind, channels, size, mult, latent):
    cfg = AutoencoderConfig(kind=kind, in_channels=channels, image_size=size, base_channels=8, channel_mult=mult,
                            z_channels=3, num_codes=16)
    ae = Autoencoder(cfg).eval()
    x = torch.rand(2, channels, size, size) * 2 - 1
    z = ae.encode(x)
    assert z.shape == (2, 3, latent, latent) == (2, *cfg.latent_shape)
    assert ae.decode(z).shape == x.shape
    out = ae(x)
    assert out.x_hat.shape == x.shape and out.regularizer.shape == (2,)
    assert cfg.rate["latent_numbers"] == 3 * latent * latent


def test_vq_encode_returns_codes_and_decode_snaps_to_them():
    ae = Autoencoder(AutoencoderConfig(kind="vq", image_size=8, channel_mult=(1, 2), base_channels=8, num_codes=5,
                                       z_channels=2)).eval()
    z = ae.encode(torch.rand(4, 1, 8, 8))
    codes = ae.quantizer.codebook
    flat = z.permute(0, 2, 3, 1).reshape(-1, 2)
    assert all(((codes - v).abs().sum(1) == 0).any() for v in flat)  # every latent vector is a code
    jitter = z + 1e-4 * torch.randn_like(z)
    torch.testing.assert_close(ae.decode(jitter), ae.decode(z))


def test_kl_encode_is_the_posterior_mean():
    ae = Autoencoder(AutoencoderConfig(image_size=8, channel_mult=(1, 2), base_channels=8)).eval()
    x = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(ae.encode(x), ae.posterior(x).mean)


def test_gaussian_kl_closed_form_equals_monte_carlo():
    g = torch.Generator().manual_seed(0)
    moments = torch.randn(1, 4, 2, 2, generator=g, dtype=torch.float64)
    q = DiagonalGaussian(moments)
    z = torch.randn(200_000, 2, 2, 2, generator=g, dtype=torch.float64) * q.std + q.mean  # (N, C, H, W)
    log_q = torch.distributions.Normal(q.mean, q.std).log_prob(z).flatten(1).sum(1)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z).flatten(1).sum(1)
    mc = log_q - log_p
    se = mc.std() / math.sqrt(len(mc))
    assert abs(float(mc.mean() - q.kl()[0])) < 4 * float(se)
    zero = DiagonalGaussian(torch.zeros(2, 4, 3, 3))  # q = N(0, I): KL = 0
    torch.testing.assert_close(zero.kl(), torch.zeros(2))


def test_vq_ema_update_matches_a_hand_computation():
    vq = VectorQuantizerEMA(num_codes=3, dim=2, decay=0.9).train()
    e0 = torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
    vq.codebook.copy_(e0)
    vq.embed_sum.copy_(e0)
    z = torch.tensor([[0.1, -0.1], [0.9, 1.2], [1.1, 0.8], [0.2, 0.0]])  # rows -> codes 0, 1, 1, 0; code 2 unused
    out = vq(z.view(1, 2, 2, 2).permute(0, 3, 1, 2), beta=0.25)  # (B, H, W, D) -> (B, D, H, W), rows in order
    assert out.indices.flatten().tolist() == [0, 1, 1, 0]
    n = torch.tensor([2.0, 2.0, 0.0])
    sums = torch.stack([z[0] + z[3], z[1] + z[2], torch.zeros(2)])
    size = 0.9 * torch.ones(3) + 0.1 * n
    embed_sum = 0.9 * e0 + 0.1 * sums
    total = size.sum()
    smoothed = (size + LAPLACE_EPS) / (total + 3 * LAPLACE_EPS) * total
    torch.testing.assert_close(vq.cluster_size, size)
    torch.testing.assert_close(vq.embed_sum, embed_sum)
    torch.testing.assert_close(vq.codebook, embed_sum / smoothed[:, None])
    # commitment beta * mean ||z_e - e||^2 with the codes before the update
    e = e0[[0, 1, 1, 0]]
    torch.testing.assert_close(out.commitment, 0.25 * (z - e).pow(2).mean()[None])
    assert out.usage == pytest.approx(2 / 3) and out.perplexity == pytest.approx(2.0)
    vq.eval()
    before = vq.codebook.clone()
    vq(z.view(1, 2, 2, 2).permute(0, 3, 1, 2))
    torch.testing.assert_close(vq.codebook, before)  # eval mode never moves the codes


def test_dead_codes_restart_at_encoder_outputs():
    vq = VectorQuantizerEMA(num_codes=4, dim=2, decay=0.5, restart_below=0.3).train()
    vq.codebook.copy_(torch.tensor([[0.0, 0.0], [100.0, 100.0], [200.0, 200.0], [300.0, 300.0]]))
    vq.embed_sum.copy_(vq.codebook)
    z = torch.randn(1, 2, 3, 3) * 0.1
    vq(z)  # codes 1-3 unused: their counts halve, 1 -> 0.5 (kept)
    assert (vq.codebook[1:] > 99).all()
    vq(z, generator=torch.Generator().manual_seed(0))  # 0.5 -> 0.25 < 0.3: restarted
    flat = z.permute(0, 2, 3, 1).reshape(-1, 2)
    for code in vq.codebook[1:]:
        assert ((flat - code).abs().sum(1) < 1e-6).any()


def test_straight_through_gradient_is_the_identity_and_commitment_pulls_towards_the_code():
    vq = VectorQuantizerEMA(num_codes=4, dim=3).eval()
    z_e = torch.randn(2, 3, 2, 2, requires_grad=True)
    w = torch.randn(2, 3, 2, 2)
    out = vq(z_e, beta=0.5)
    torch.testing.assert_close(out.z_q.detach(), vq.quantize(z_e.detach()))
    (g,) = torch.autograd.grad((w * out.z_q).sum(), z_e)
    torch.testing.assert_close(g, w)  # d z_q / d z_e = I
    (gc,) = torch.autograd.grad(out.commitment.sum(), z_e)
    e = vq.quantize(z_e.detach())
    torch.testing.assert_close(gc, 0.5 * 2 * (z_e.detach() - e) / z_e[0].numel())


def test_adaptive_weight_equals_the_ratio_of_hand_derived_gradient_norms():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(2, 3, generator=g, requires_grad=True)  # the "last layer" G_L
    x, y, a = torch.randn(3, generator=g), torch.randn(2, generator=g), torch.randn(2, generator=g)
    out = W @ x
    rec = (out - y).pow(2).sum()  # grad_W = 2 (W x - y) x^T
    gan = -(a * out).sum()  # grad_W = -a x^T
    lam = adaptive_weight(rec, gan, W)
    g_rec = 2 * torch.outer(out.detach() - y, x)
    g_gan = -torch.outer(a, x)
    assert float(lam) == pytest.approx(float(g_rec.norm() / (g_gan.norm() + 1e-6)), rel=1e-6)
    assert not lam.requires_grad
    big = adaptive_weight(rec, 0.0 * gan, W)  # a vanishing GAN gradient: clamped, never infinite
    assert float(big) == pytest.approx(1e4)


def test_gan_losses_at_known_logits():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-3.0, 0.0])
    # hinge: 0.5 (mean relu(1 - r) + mean relu(1 + f)) = 0.5 (0.25 + 0.5)
    assert float(discriminator_loss("hinge", real, fake)) == pytest.approx(0.375)
    assert float(generator_loss("hinge", fake)) == pytest.approx(1.5)
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    want = 0.5 * ((sp(-2.0) + sp(-0.5)) / 2 + (sp(-3.0) + sp(0.0)) / 2)
    assert float(discriminator_loss("non_saturating", real, fake)) == pytest.approx(want)
    assert float(generator_loss("non_saturating", fake)) == pytest.approx((sp(3.0) + sp(0.0)) / 2)
    with pytest.raises(ValueError, match="hinge"):
        generator_loss("wgan", fake)


def test_patch_discriminator_gives_one_logit_per_patch():
    assert PatchDiscriminator(1, 8, 2)(torch.zeros(2, 1, 28, 28)).shape == (2, 1, 5, 5)
    assert PatchDiscriminator(3, 8, 3)(torch.zeros(1, 3, 32, 32)).shape == (1, 1, 2, 2)


def test_reconstruction_and_perceptual_losses():
    from torchdiffusion.metrics.features import FeatureNet, FeatureNetConfig

    x, y = torch.zeros(2, 1, 8, 8), torch.full((2, 1, 8, 8), 0.5)
    torch.testing.assert_close(reconstruction_loss("l1", x, y), torch.full((2,), 0.5))
    torch.testing.assert_close(reconstruction_loss("l2", x, y), torch.full((2,), 0.25))
    torch.manual_seed(0)
    p = PerceptualLoss(FeatureNet(FeatureNetConfig(width=4, feature_dim=8)))
    a = torch.rand(2, 1, 8, 8)
    b = (a + 0.3 * torch.randn(2, 1, 8, 8)).requires_grad_()
    torch.testing.assert_close(p(a, a), torch.zeros(2))
    d = p(a, b)
    assert (d > 0).all()
    d.sum().backward()
    assert b.grad.abs().sum() > 0 and all(q.grad is None for q in p.net.parameters())


def test_codec_scales_and_checks_shapes():
    ae = Autoencoder(AutoencoderConfig(image_size=8, channel_mult=(1, 2), base_channels=8, z_channels=2)).eval()
    codec = LatentCodec(ae, 2.0)
    x = torch.rand(5, 1, 8, 8)
    torch.testing.assert_close(codec.encode(x, batch_size=2), ae.encode(x) / 2)
    z = torch.randn(3, 2, 4, 4)
    torch.testing.assert_close(codec.decode(z), ae.decode(2 * z))
    with pytest.raises(ValueError, match=r"latents \(B, 2, 4, 4\)"):
        ae.decode(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"images \(B, 1, 8, 8\)"):
        ae.encode(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="scale"):
        LatentCodec(ae, float("nan"))


@pytest.mark.parametrize("bad,match", [({"kind": "gan"}, "kind"), ({"channel_mult": []}, "channel_mult"),
                                       ({"codebook_decay": 1.0}, "codebook_decay"), ({"z_channels": 0}, "z_channels")])
def test_autoencoder_config_refuses_bad_values(bad, match):
    with pytest.raises(ValueError, match=match):
        AutoencoderConfig(**bad)
