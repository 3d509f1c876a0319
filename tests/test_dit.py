"""DiT (Peebles & Xie 2023): patches and positions in closed form, adaLN-Zero at init, conditioning, config."""

from __future__ import annotations

import json
import math

import pytest
import torch
from test_backbones import levels, perturb_zero_init

from torchdiffusion.build import build_model
from torchdiffusion.config import ModelConfig, ProcessConfig
from torchdiffusion.nn import DiT, DiTConfig, build_backbone, count_parameters
from torchdiffusion.nn.dit import FREQ_DIM, patchify, sincos_2d, unpatchify


def tiny_dit(**kw) -> DiT:
    base = dict(in_channels=1, image_size=8, patch_size=2, hidden_dim=32, depth=2, num_heads=4)
    base.update(kw)
    return DiT(DiTConfig(**base))


# ---------------------------------------------------------------- patches and positions

@pytest.mark.parametrize("shape, p", [((2, 1, 8, 8), 2), ((3, 3, 12, 8), 4), ((1, 2, 6, 6), 1), ((2, 1, 28, 28), 7)])
def test_patchify_unpatchify_round_trip_is_exact(shape, p):
    x = torch.randn(shape)
    B, C, H, W = shape
    tokens = patchify(x, p)
    assert tokens.shape == (B, (H // p) * (W // p), C * p * p)
    assert torch.equal(unpatchify(tokens, p, C, H // p, W // p), x)
    t = torch.randn_like(tokens)
    assert torch.equal(patchify(unpatchify(t, p, C, H // p, W // p), p), t)
    # token n = i * (W/p) + j is the patch at row i, column j, flattened in (C, p, p) order
    i, j = H // p - 1, 0
    assert torch.equal(tokens[:, i * (W // p) + j], x[:, :, i * p:(i + 1) * p, j * p:(j + 1) * p].reshape(B, -1))


def test_patch_embedding_conv_is_a_linear_map_of_patchify():
    # the stride-p conv and patchify/unpatchify must agree on token order, or outputs land on the wrong patches
    m = tiny_dit(in_channels=3, patch_size=4)
    x = torch.randn(2, 3, 8, 8)
    w, b = m.patch_embed.weight, m.patch_embed.bias
    by_conv = m.patch_embed(x).flatten(2).transpose(1, 2)
    by_linear = patchify(x, 4) @ w.reshape(w.shape[0], -1).T + b
    torch.testing.assert_close(by_conv, by_linear)


def test_positional_embedding_matches_closed_form():
    g, d = 4, 16
    pe = sincos_2d(g, d)
    expected = torch.empty(g * g, d)
    q = d // 4  # frequencies per axis
    for i in range(g):
        for j in range(g):
            for k in range(q):
                omega = 10000.0 ** (-k / q)
                expected[i * g + j, k] = math.sin(i * omega)
                expected[i * g + j, q + k] = math.cos(i * omega)
                expected[i * g + j, 2 * q + k] = math.sin(j * omega)
                expected[i * g + j, 3 * q + k] = math.cos(j * omega)
    torch.testing.assert_close(pe, expected)
    # the model holds it as a fixed buffer: not a parameter, not saved, same as the closed form
    m = tiny_dit(hidden_dim=16, image_size=8, patch_size=2)
    torch.testing.assert_close(m.pos_embed[0], expected)
    assert not any(p is m.pos_embed for p in m.parameters())
    assert "pos_embed" not in m.state_dict()


# ---------------------------------------------------------------- shapes and adaLN-Zero

@pytest.mark.parametrize("kw, out", [
    (dict(), 1),
    (dict(learned_variance=True), 2),
    (dict(in_channels=3, patch_size=4), 3),
    (dict(in_channels=3, learned_variance=True, patch_size=1), 6),
    (dict(in_channels=3, out_channels=1, learned_variance=True), 2),
])
def test_output_shape(kw, out):
    m = tiny_dit(**kw)
    C = m.config.in_channels
    assert m.config.total_out_channels == out
    assert m(torch.randn(2, C, 8, 8), levels(2)).shape == (2, out, 8, 8)


def test_fresh_dit_output_is_exactly_zero_and_every_block_is_the_identity():
    m = tiny_dit(num_classes=3, context_dim=5, learned_variance=True)
    x, t = torch.randn(2, 1, 8, 8), levels(2)
    ctx = torch.randn(2, 4, 5)
    out = m(x, t, class_labels=torch.tensor([0, 3]), context=ctx)
    assert torch.count_nonzero(out) == 0
    h, c = torch.randn(2, 16, 32), torch.randn(2, 32)
    for block in m.blocks:
        assert torch.equal(block(h, c), h)
        assert torch.equal(block(h, c, m.context_norm(ctx), torch.ones(2, 4, dtype=torch.bool)), h)


def test_class_conditioning_is_wired_and_null_label():
    # adaLN-Zero: after one step only the zero-init output linear has moved, so labels cannot matter yet;
    # the second step moves the modulations, which read c = emb(noise) + emb(label): labels must matter
    torch.manual_seed(0)
    m = tiny_dit(num_classes=3)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    x, t = torch.randn(4, 1, 8, 8), levels(4)
    labels, target = torch.tensor([0, 1, 2, 3]), torch.randn(4, 1, 8, 8)

    def step() -> None:
        opt.zero_grad()
        (m(x, t, class_labels=labels) - target).square().mean().backward()
        opt.step()

    def by_label(k: int) -> torch.Tensor:
        with torch.no_grad():
            return m(x, t, class_labels=torch.full((4,), k))

    step()
    assert by_label(0).abs().sum() > 0
    assert torch.equal(by_label(0), by_label(1))
    step()
    a, b, null = by_label(0), by_label(1), by_label(3)
    assert not torch.allclose(a, b) and not torch.allclose(a, null)
    with torch.no_grad():
        torch.testing.assert_close(m(x, t), null)  # no labels = the null label num_classes
    # the gradient reaches the label embedding itself one step later, through the now nonzero modulations,
    # and the null row is trained like any other
    step()
    assert (m.label_embed.weight.grad.abs().sum(dim=1) > 0).all()


# ---------------------------------------------------------------- cross-attention context

def test_context_cross_attention_and_mask():
    torch.manual_seed(0)
    m = tiny_dit(context_dim=6)
    perturb_zero_init(m)
    x, t = torch.randn(2, 1, 8, 8), levels(2)
    ctx = torch.randn(2, 5, 6)
    with torch.no_grad():
        no_ctx, with_ctx = m(x, t), m(x, t, context=ctx)
        assert not torch.allclose(with_ctx, no_ctx)
        assert not torch.allclose(with_ctx, m(x, t, context=torch.randn(2, 5, 6)))

        # keep the first 3 tokens of sample 0 and the first 2 of sample 1
        mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
        out = m(x, t, context=ctx, context_mask=mask)
        garbage = torch.where(mask[..., None], ctx, 100 * torch.randn(2, 5, 6))
        assert torch.equal(m(x, t, context=garbage, context_mask=mask), out)  # masked tokens have no influence...
        # ...exactly as if they were absent
        torch.testing.assert_close(out[:1], m(x[:1], t[:1], context=ctx[:1, :3]), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[1:], m(x[1:], t[1:], context=ctx[1:, :2]), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(m(x, t, context=ctx, context_mask=torch.ones(2, 5, dtype=torch.bool)), with_ctx)

        # a fully masked row is finite and equals running without context; its neighbour is unaffected
        mixed = torch.tensor([[0, 0, 0, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
        res = m(x, t, context=ctx, context_mask=mixed)
        assert torch.isfinite(res).all()
        torch.testing.assert_close(res[0], no_ctx[0])
        torch.testing.assert_close(res[1], out[1])
        none_kept = m(x, t, context=ctx, context_mask=torch.zeros(2, 5, dtype=torch.bool))
        torch.testing.assert_close(none_kept, no_ctx)

    # and no NaN gradient flows back from a fully masked row
    ctx.requires_grad_(True)
    m(x, t, context=ctx, context_mask=mixed).square().sum().backward()
    assert torch.isfinite(ctx.grad).all() and torch.count_nonzero(ctx.grad[0]) == 0


def test_every_parameter_gets_gradient():
    torch.manual_seed(0)
    m = tiny_dit(num_classes=2, context_dim=4, learned_variance=True)
    perturb_zero_init(m)
    cond = dict(class_labels=torch.tensor([0, 2]), context=torch.randn(2, 3, 4))
    (m(torch.randn(2, 1, 8, 8), levels(2), **cond) - 1).square().mean().backward()
    dead = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, f"parameters without gradient: {dead}"


def test_bf16_autocast_forward_is_finite():
    m = tiny_dit(context_dim=4)
    perturb_zero_init(m)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(torch.randn(2, 1, 8, 8), levels(2), context=torch.randn(2, 3, 4),
                context_mask=torch.tensor([[1, 0, 0], [0, 0, 0]], dtype=torch.bool))
    assert out.shape == (2, 1, 8, 8) and torch.isfinite(out).all()


# ---------------------------------------------------------------- parameters, config, registry

@pytest.mark.parametrize("kw", [dict(), dict(num_classes=10, context_dim=12, learned_variance=True, mlp_ratio=2.5)])
def test_parameter_count_matches_the_architecture(kw):
    m = tiny_dit(in_channels=3, patch_size=4, **kw)
    c = m.config
    d, p, h = c.hidden_dim, c.patch_size, int(c.hidden_dim * c.mlp_ratio)
    lin = lambda i, o: i * o + o  # noqa: E731
    per_block = lin(d, 3 * d) + lin(d, d) + lin(d, h) + lin(h, d) + lin(d, 6 * d)
    if c.context_dim:
        per_block += 2 * d + lin(d, d) + lin(c.context_dim, 2 * d) + lin(d, d)  # norm, q, kv, proj
    expected = (lin(c.in_channels * p * p, d)                                 # patch embedding
                + lin(FREQ_DIM, d) + lin(d, d)                                # noise-level MLP
                + ((c.num_classes + 1) * d if c.num_classes else 0)           # labels and the null label
                + (2 * c.context_dim if c.context_dim else 0)                 # context LayerNorm
                + c.depth * per_block
                + lin(d, 2 * d) + lin(d, p * p * c.total_out_channels))      # final adaLN and linear
    assert count_parameters(m) == expected  # the positional embedding is fixed, not a parameter


def test_config_round_trip_and_registry():
    cfg = DiTConfig(in_channels=3, image_size=16, patch_size=4, hidden_dim=64, depth=3, num_heads=2,
                    mlp_ratio=2.0, num_classes=10, context_dim=8, learned_variance=True)
    assert DiTConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    m, got = build_backbone("dit", json.loads(json.dumps(cfg.to_dict())))
    assert isinstance(m, DiT) and got == cfg
    m2, _ = build_backbone("dit", cfg)
    assert count_parameters(m2) == count_parameters(m)
    with pytest.raises(ValueError, match="hiden_dim"):
        build_backbone("dit", {"hiden_dim": 64})


def test_learned_variance_head_works_with_model_denoiser():
    params = dict(in_channels=1, image_size=8, patch_size=2, hidden_dim=32, depth=1, num_heads=2,
                  learned_variance=True)
    model, bcfg = build_model(ModelConfig(backbone="dit", prediction="eps", params=params), ProcessConfig(T=100))
    assert isinstance(bcfg, DiTConfig) and model.learned_variance
    perturb_zero_init(model.backbone)
    x0_hat, frac = model.forward_with_variance(torch.randn(2, 1, 8, 8), torch.tensor([1.0, 5.0]))
    assert x0_hat.shape == frac.shape == (2, 1, 8, 8)


# ---------------------------------------------------------------- learning

def test_tiny_dit_overfits_a_fixed_batch():
    torch.manual_seed(0)
    m = tiny_dit(hidden_dim=32, depth=2, num_classes=2)
    x, t = torch.randn(8, 1, 8, 8), levels(8)
    labels = torch.tensor([0, 1] * 4)
    # a smooth target per image that the noisy input alone does not give away
    target = torch.sin(torch.linspace(0, 3, 64)).view(1, 1, 8, 8) * torch.randn(8, 1, 1, 1)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(100):
        opt.zero_grad()
        loss = (m(x, t, class_labels=labels) - target).square().mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(target.square().mean().item())  # the fresh output is exactly zero
    assert losses[-1] < losses[0] / 20, losses[::10]


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("kw, field", [
    (dict(image_size=10, patch_size=4), "patch_size"),
    (dict(hidden_dim=30, num_heads=4), "num_heads"),
    (dict(hidden_dim=6, num_heads=3), "hidden_dim"),
    (dict(depth=0), "depth"),
    (dict(patch_size=0), "patch_size"),
    (dict(mlp_ratio=0.0), "mlp_ratio"),
    (dict(num_classes=-1), "num_classes"),
    (dict(context_dim=-2), "context_dim"),
    (dict(out_channels=0), "out_channels"),
])
def test_config_validation_names_the_field(kw, field):
    base = dict(image_size=8, patch_size=2, hidden_dim=32, num_heads=4)
    base.update(kw)
    with pytest.raises(ValueError, match=field):
        DiTConfig(**base)


def test_bad_inputs_are_named():
    m = tiny_dit(in_channels=3)
    t = levels(2)
    with pytest.raises(ValueError, match=r"\(B, 3, 8, 8\), got \(2, 1, 8, 8\)"):
        m(torch.randn(2, 1, 8, 8), t)
    with pytest.raises(ValueError, match=r"\(B, 3, 8, 8\), got \(2, 3, 16, 16\)"):
        m(torch.randn(2, 3, 16, 16), t)
    with pytest.raises(ValueError, match="noise_level"):
        m(torch.randn(2, 3, 8, 8), levels(3))
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match="num_classes"):
        m(x, t, class_labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="context_dim"):
        m(x, t, context=torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="without context"):
        m(x, t, context_mask=torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"class_labels must be in \[0, 3\]"):
        tiny_dit(in_channels=3, num_classes=3)(x, t, class_labels=torch.tensor([0, 4]))
    mc = tiny_dit(in_channels=3, context_dim=4)
    with pytest.raises(ValueError, match=r"context must have shape \(2, L, 4\)"):
        mc(x, t, context=torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match=r"context_mask must have shape \(2, 3\)"):
        mc(x, t, context=torch.randn(2, 3, 4), context_mask=torch.ones(2, 4, dtype=torch.bool))
