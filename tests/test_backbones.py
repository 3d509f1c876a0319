"""Backbones: shapes, the conditioning hooks, zero-init, config round trips and gradient flow."""

from __future__ import annotations

import json

import pytest
import torch

from torchdiffusion.nn import (MLP, MLPConfig, UNet, UNetConfig, build_backbone, count_parameters,
                               timestep_embedding)


def tiny_unet(**kw) -> UNet:
    base = dict(in_channels=1, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, num_heads=2,
                groups=4, attn_resolutions=(4,), image_size=8)
    base.update(kw)
    return UNet(UNetConfig(**base))


@torch.no_grad()
def perturb_zero_init(model: torch.nn.Module, std: float = 0.2) -> None:
    """Give every all-zero parameter (zero-init convs, norm biases) random values, so every path carries signal."""
    g = torch.Generator().manual_seed(1)
    for p in model.parameters():
        if not p.any():
            p.copy_(torch.randn(p.shape, generator=g) * std)


def levels(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, generator=torch.Generator().manual_seed(seed)) * 999


# ---------------------------------------------------------------- embeddings

@pytest.mark.parametrize("dim", [16, 17])
def test_timestep_embedding_shape_and_distinct(dim):
    # step indices, 1000 t and log(sigma)/4 all live on very different scales; each must separate nearby levels
    for a, b in [(10.0, 11.0), (500.0, 501.0), (-0.5, -0.45)]:
        e = timestep_embedding(torch.tensor([a, b]), dim)
        assert e.shape == (2, dim) and e.dtype == torch.float32
        assert not torch.allclose(e[0], e[1])
    e = timestep_embedding(torch.tensor([3.0]), dim)
    # [cos, sin] pairs of the same angle lie on the unit circle; an odd dim pads one zero column
    half = dim // 2
    torch.testing.assert_close(e[0, :half] ** 2 + e[0, half:2 * half] ** 2, torch.ones(half))
    if dim % 2:
        assert e[0, -1] == 0
    # level 0: cos = 1, sin = 0
    torch.testing.assert_close(timestep_embedding(torch.zeros(1), 4), torch.tensor([[1.0, 1.0, 0.0, 0.0]]))


def test_timestep_embedding_rejects_non_vector():
    with pytest.raises(ValueError, match="shape"):
        timestep_embedding(torch.zeros(2, 1), 8)


# ---------------------------------------------------------------- MLP

@pytest.mark.parametrize("out_mult", [1, 2])
def test_mlp_shapes(out_mult):
    m = MLP(MLPConfig(dim=3, hidden=16, depth=2, emb_dim=8, out_mult=out_mult))
    assert m(torch.randn(5, 3), levels(5)).shape == (5, 3 * out_mult)


def test_mlp_class_labels_and_null_label():
    torch.manual_seed(0)
    m = MLP(MLPConfig(dim=2, hidden=16, depth=2, emb_dim=8, num_classes=3))
    perturb_zero_init(m)
    x, t = torch.randn(4, 2), levels(4)
    a = m(x, t, class_labels=torch.zeros(4, dtype=torch.long))
    b = m(x, t, class_labels=torch.ones(4, dtype=torch.long))
    assert not torch.allclose(a, b)
    # no labels means the null label num_classes
    torch.testing.assert_close(m(x, t), m(x, t, class_labels=torch.full((4,), 3)))
    with pytest.raises(ValueError, match="num_classes"):
        MLP(MLPConfig(hidden=16, depth=1, emb_dim=8))(x, t, class_labels=torch.zeros(4, dtype=torch.long))


# ---------------------------------------------------------------- UNet shapes

@pytest.mark.parametrize("size, mult, attn", [
    (28, (1, 2, 2), (7,)),      # MNIST: 28 -> 14 -> 7
    (28, (1, 1, 1, 1), (4,)),   # one more level: 7 -> 4 and back 4 -> 7
    (32, (1, 2, 2), (16, 8)),
    (8, (1, 2), (4,)),          # sklearn digits
    (64, (1, 1, 2, 2), (8,)),
])
def test_unet_shapes(size, mult, attn):
    m = tiny_unet(channel_mult=mult, attn_resolutions=attn, image_size=size, in_channels=3)
    n_attn = sum(1 for mod in m.modules() if type(mod).__name__ == "Attention")
    assert n_attn == 1 + 3 * len(attn)  # mid block, plus one down and two up per attention level (1 res block)
    assert m(torch.randn(2, 3, size, size), levels(2)).shape == (2, 3, size, size)


def test_unet_out_channels_and_learned_variance():
    x, t = torch.randn(2, 3, 8, 8), levels(2)
    assert tiny_unet(in_channels=3)(x, t).shape == (2, 3, 8, 8)
    assert tiny_unet(in_channels=3, learned_variance=True)(x, t).shape == (2, 6, 8, 8)
    assert tiny_unet(in_channels=3, out_channels=1, learned_variance=True)(x, t).shape == (2, 2, 8, 8)


@pytest.mark.parametrize("size, mult", [(28, (1, 3, 8)), (28, (1, 1, 2, 2)), (8, (1, 2))])
def test_narrow_upsample_shapes_and_widths(size, mult):
    m = tiny_unet(channel_mult=mult, image_size=size, narrow_upsample=True, attn_resolutions=())
    perturb_zero_init(m)
    assert m(torch.randn(2, 1, size, size), levels(2)).shape == (2, 1, size, size)
    # the upsample leaving level L (coarse to fine: L = n-1 .. 1) outputs level L-1's width
    finer = [8 * k for k in reversed(mult[:-1])]
    assert [u.conv.out_channels for u in m.upsample] == finer
    assert [u.conv.in_channels for u in m.upsample] == [8 * k for k in reversed(mult[1:])]


def test_narrow_upsample_saves_the_counted_parameters():
    # base 8, mult (1, 2): the one upsample conv 16 -> 16 becomes 16 -> 8, and the first fine up block then eats
    # 8 + 8 instead of 16 + 8 channels: its norm1 affine (2 per channel), 3x3 conv1 and 1x1 skip shrink by 8 inputs
    wide, narrow = count_parameters(tiny_unet()), count_parameters(tiny_unet(narrow_upsample=True))
    upsample = (16 * 16 * 9 + 16) - (16 * 8 * 9 + 8)
    block = 2 * 8 + 8 * 8 * 9 + 8 * 8
    assert wide - narrow == upsample + block


def test_fresh_unet_output_is_exactly_zero():
    # the final conv is zero-initialised, so the untrained network predicts exactly 0 everywhere
    m = tiny_unet(num_classes=2, context_dim=4)
    out = m(torch.randn(2, 1, 8, 8), levels(2), class_labels=torch.tensor([0, 1]), context=torch.randn(2, 3, 4))
    assert torch.count_nonzero(out) == 0


def test_scale_skip_changes_output():
    torch.manual_seed(0)
    a, b = tiny_unet(), tiny_unet(scale_skip=True)
    b.load_state_dict(a.state_dict())  # same weights: only the 1/sqrt(2) residual scaling differs
    perturb_zero_init(a), perturb_zero_init(b)
    x, t = torch.randn(2, 1, 8, 8), levels(2)
    assert not torch.allclose(a(x, t), b(x, t))


# ---------------------------------------------------------------- conditioning hooks

def test_unet_class_conditioning_and_null_label():
    torch.manual_seed(0)
    m = tiny_unet(num_classes=3)
    perturb_zero_init(m)
    x, t = torch.randn(2, 1, 8, 8), levels(2)
    a = m(x, t, class_labels=torch.tensor([0, 0]))
    b = m(x, t, class_labels=torch.tensor([1, 2]))
    assert not torch.allclose(a[0], b[0]) and not torch.allclose(a[1], b[1])
    null = m(x, t, class_labels=torch.tensor([3, 3]))
    assert not torch.allclose(null, a)
    torch.testing.assert_close(m(x, t), null)  # no labels = the null label
    with pytest.raises(ValueError, match="num_classes"):
        tiny_unet()(x, t, class_labels=torch.tensor([0, 0]))


def test_unet_cross_attention_context_and_mask():
    torch.manual_seed(0)
    m = tiny_unet(context_dim=6)
    perturb_zero_init(m)
    x, t = torch.randn(2, 1, 8, 8), levels(2)
    ctx = torch.randn(2, 5, 6)
    with_ctx = m(x, t, context=ctx)
    assert not torch.allclose(with_ctx, m(x, t))
    assert not torch.allclose(with_ctx, m(x, t, context=torch.randn(2, 5, 6)))

    # keep the first 3 tokens of sample 0 and the first 2 of sample 1
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
    out = m(x, t, context=ctx, context_mask=mask)
    garbage = torch.where(mask[..., None], ctx, 100 * torch.randn(2, 5, 6))
    torch.testing.assert_close(m(x, t, context=garbage, context_mask=mask), out)  # masked tokens are ignored...
    # ...exactly as if they were absent
    torch.testing.assert_close(out[:1], m(x[:1], t[:1], context=ctx[:1, :3]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1:], m(x[1:], t[1:], context=ctx[1:, :2]), atol=1e-5, rtol=1e-5)
    # all-keep mask = no mask; an all-masked context still has the image tokens to attend to
    torch.testing.assert_close(m(x, t, context=ctx, context_mask=torch.ones(2, 5, dtype=torch.bool)), with_ctx)
    assert torch.isfinite(m(x, t, context=ctx, context_mask=torch.zeros(2, 5, dtype=torch.bool))).all()
    with pytest.raises(ValueError, match="context_dim"):
        tiny_unet()(x, t, context=ctx)


# ---------------------------------------------------------------- gradients

def test_every_parameter_gets_gradient():
    torch.manual_seed(0)
    m = tiny_unet(num_classes=2, context_dim=4, learned_variance=True)
    x, t = torch.randn(2, 1, 8, 8), levels(2)
    cond = dict(class_labels=torch.tensor([0, 2]), context=torch.randn(2, 3, 4))

    # fresh model: the zero-init head blocks every gradient but its own, yet none is missing
    (m(x, t, **cond) - 1).square().mean().backward()
    assert all(p.grad is not None for p in m.parameters())
    assert m.conv_out.weight.grad.abs().sum() > 0

    # once the zero-init layers are perturbed, every parameter must receive a nonzero gradient;
    # this fails for any parameter that the forward pass does not use
    m.zero_grad(set_to_none=True)
    perturb_zero_init(m)
    (m(x, t, **cond) - 1).square().mean().backward()
    dead = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, f"parameters without gradient: {dead}"


def test_mlp_every_parameter_gets_gradient():
    torch.manual_seed(0)
    m = MLP(MLPConfig(dim=2, hidden=16, depth=2, emb_dim=8, num_classes=2))
    perturb_zero_init(m)
    (m(torch.randn(4, 2), levels(4), class_labels=torch.tensor([0, 1, 2, 1])) - 1).square().mean().backward()
    dead = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, f"parameters without gradient: {dead}"


# ---------------------------------------------------------------- configs and registry

@pytest.mark.parametrize("cfg", [
    MLPConfig(dim=3, hidden=32, num_classes=4),
    UNetConfig(in_channels=3, channel_mult=(1, 2, 4), attn_resolutions=(8, 16), learned_variance=True, context_dim=8),
])
def test_config_round_trip(cfg):
    d = cfg.to_dict()
    assert type(cfg).from_dict(d) == cfg
    assert type(cfg).from_dict(json.loads(json.dumps(d))) == cfg  # tuples come back from JSON lists


@pytest.mark.parametrize("cls", [MLPConfig, UNetConfig])
def test_config_unknown_key_is_named(cls):
    with pytest.raises(ValueError, match="chanel_mult") as err:
        cls.from_dict({"chanel_mult": [1, 2]})
    assert "allowed keys" in str(err.value)


def test_unet_config_validation():
    with pytest.raises(ValueError, match="num_heads"):
        UNetConfig(base_channels=10, num_heads=4)
    # groups shrink to a divisor of the channel count instead of failing
    m = tiny_unet(base_channels=6, num_heads=3, groups=4)
    assert m(torch.randn(1, 1, 8, 8), levels(1)).shape == (1, 1, 8, 8)


def test_build_backbone_registry():
    m, cfg = build_backbone("mlp", {"dim": 2, "hidden": 16, "depth": 1, "emb_dim": 8})
    assert isinstance(m, MLP) and cfg == MLPConfig(dim=2, hidden=16, depth=1, emb_dim=8)
    assert count_parameters(m) == sum(p.numel() for p in m.parameters()) > 0
    m, cfg = build_backbone("unet", UNetConfig(base_channels=8, channel_mult=(1,), groups=4, image_size=8))
    assert isinstance(m, UNet)
    with pytest.raises(ValueError, match="unknown backbone .transformer.; choose one of .*mlp"):
        build_backbone("transformer", {})
    with pytest.raises(ValueError, match="bogus"):
        build_backbone("unet", {"bogus": 1})
