"""Sequence transformers: adaLN-Zero at init, what attends to what (bidirectional vs causal), time conditioning,
config round trips, and the backbone as a discrete denoiser trained by the masked and D3PM losses."""

from __future__ import annotations

import json

import pytest
import torch
from test_backbones import perturb_zero_init

from torchdiffusion.discrete import Absorbing, BackboneDenoiser, MaskedDiffusion, Uniform, d3pm_loss, masked_loss
from torchdiffusion.nn import build_backbone, count_parameters
from torchdiffusion.nn.dit import sincos_1d
from torchdiffusion.nn.sequence import (CausalTransformer, CausalTransformerConfig, SequenceTransformer,
                                        SequenceTransformerConfig, apply_rotary, rotary_angles)
from torchdiffusion.registry import BACKBONES, DISCRETE_PROCESSES


def tiny(cls=SequenceTransformer, **kw):
    base = dict(vocab_size=5, seq_len=8, hidden_dim=32, depth=2, num_heads=4)
    base.update(kw)
    return cls(cls.config_class(**base))


def ids(B=3, L=8, K=5, seed=0):
    return torch.randint(0, K, (B, L), generator=torch.Generator().manual_seed(seed))


def test_a_fresh_network_outputs_uniform_logits():
    for model in (tiny(), tiny(positions="sinusoidal"), tiny(positions="rotary"), tiny(CausalTransformer),
                  tiny(out_classes=7)):
        out = model(ids(), torch.tensor([0.0, 500.0, 999.0]))
        assert out.shape == (3, 8, model.config.num_outputs) and torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize("positions", ["learned", "rotary"])
@pytest.mark.parametrize("causal", [False, True])
def test_attention_is_bidirectional_or_causal(causal, positions):
    torch.manual_seed(0)
    model = tiny(causal=causal, time_conditioning=False, positions=positions)
    with torch.no_grad():
        perturb_zero_init(model)
    x = ids(B=1)
    y = x.clone()
    y[0, 5] = (y[0, 5] + 1) % 5  # change token 5 only
    diff = (model(x) - model(y)).abs().amax(-1)[0]  # (L,)
    assert (diff[5:] > 1e-4).all()
    if causal:
        assert torch.equal(diff[:5], torch.zeros(5))  # the past never sees the future
    else:
        assert (diff[:5] > 1e-4).all()


def test_time_conditioning_and_its_absence():
    torch.manual_seed(0)
    model, static = tiny(), tiny(time_conditioning=False)
    with torch.no_grad():
        perturb_zero_init(model)
        perturb_zero_init(static)
    x = ids(B=2)
    a, b = model(x, torch.tensor([10.0, 10.0])), model(x, torch.tensor([10.0, 900.0]))
    assert torch.allclose(a[0], b[0]) and not torch.allclose(a[1], b[1])
    assert torch.equal(static(x), static(x, torch.tensor([3.0, 700.0])))  # the noise level is ignored
    with pytest.raises(ValueError, match=r"time-conditioned: noise_level must have shape \(2,\), got None"):
        model(x)


def test_positions_shorter_sequences_and_input_checks():
    model = tiny(positions="sinusoidal")
    torch.testing.assert_close(model.pos_embed[0], sincos_1d(torch.arange(8), 32).float())
    assert model(ids(L=5), torch.zeros(3)).shape == (3, 5, 5)
    with pytest.raises(ValueError, match=r"integer token ids of shape \(B, L\) with 0 < L <= 8"):
        model(ids(L=9), torch.zeros(3))
    with pytest.raises(ValueError, match="integer token ids"):
        model(ids().float(), torch.zeros(3))
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 5\), got values in \[5, 5\]"):
        model(torch.full((3, 8), 5), torch.zeros(3))


def test_rotary_scores_depend_on_the_offset_only_and_rotations_keep_norms():
    """RoPE (Su et al. 2021, sec. 3.2): with the same q and k at every position, q_m . k_n is a function of m - n
    (a Toeplitz score matrix), position 0 is not rotated, and every rotation keeps the vector's norm."""
    g = torch.Generator().manual_seed(0)
    cos, sin = rotary_angles(12, 8)
    q, k = torch.randn(8, generator=g).expand(12, 8), torch.randn(8, generator=g).expand(12, 8)
    rq, rk = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
    scores = rq @ rk.T  # (12, 12)
    for offset in range(-11, 12):
        diag = scores.diagonal(offset)
        torch.testing.assert_close(diag, diag[:1].expand_as(diag), atol=1e-5, rtol=0)
    torch.testing.assert_close(rq[0], q[0])
    torch.testing.assert_close(rq.norm(dim=-1), q.norm(dim=-1))
    # the backbone adds no position to the tokens then, and the rotation is the only thing that tells order
    model = tiny(positions="rotary", time_conditioning=False)
    assert torch.equal(model.pos_embed, torch.zeros_like(model.pos_embed))
    assert model.state_dict().keys() == tiny(positions="sinusoidal", time_conditioning=False).state_dict().keys()


def test_configs_round_trip_and_the_causal_twin_has_the_same_size():
    model, cfg = build_backbone("sequence_transformer", {"vocab_size": 29, "seq_len": 16, "hidden_dim": 32,
                                                         "depth": 2, "num_heads": 2, "positions": "sinusoidal"})
    assert isinstance(model, SequenceTransformer) and cfg.data_shape == (16,) and cfg.num_outputs == 29
    again = SequenceTransformerConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    causal, ccfg = build_backbone("causal_transformer", {**cfg.to_dict(), "causal": True,
                                                         "time_conditioning": False})
    assert isinstance(ccfg, CausalTransformerConfig) and ccfg.causal and not ccfg.time_conditioning
    static, _ = build_backbone("sequence_transformer", {**cfg.to_dict(), "time_conditioning": False})
    assert count_parameters(causal) == count_parameters(static)
    assert CausalTransformerConfig().causal and not CausalTransformerConfig().time_conditioning
    assert BACKBONES["causal_transformer"] is CausalTransformer
    with pytest.raises(ValueError, match="unknown config key 'vocab'"):
        SequenceTransformerConfig.from_dict({"vocab": 3})
    with pytest.raises(ValueError, match="positions must be one of learned, sinusoidal, rotary, got 'rope'"):
        SequenceTransformerConfig(positions="rope")
    with pytest.raises(ValueError, match="rotary positions need an even head size"):
        SequenceTransformerConfig(hidden_dim=12, num_heads=4, positions="rotary")
    with pytest.raises(ValueError, match="num_heads=3 must divide hidden_dim=32"):
        SequenceTransformerConfig(hidden_dim=32, num_heads=3)


def test_every_registered_discrete_process_builds_on_a_small_vocabulary():
    for name in DISCRETE_PROCESSES:
        process = DISCRETE_PROCESSES[name](4)
        assert process.num_classes in (4, 5) and torch.isclose(process.prior_probs().sum(), torch.tensor(1.0).double())


def test_backbone_denoiser_applies_subs_and_learns_a_toy_language():
    """Masked diffusion on sequences 'abab...' or 'baba...': a few steps of the bound must move it down."""
    torch.manual_seed(0)
    process = MaskedDiffusion(vocab_size=2)
    backbone = tiny(vocab_size=3, seq_len=6, out_classes=3, time_conditioning=False)
    den = BackboneDenoiser(backbone, process)
    assert den.time_independent and den.subs
    x_t = torch.tensor([[0, 2, 1, 2, 0, 1]])
    probs = den(x_t, torch.tensor([0.5])).exp()
    assert probs[0, :, 2].max() == 0 and probs[0, 0, 0] == 1 and probs[0, 2, 1] == 1
    data = torch.tensor([[0, 1, 0, 1, 0, 1], [1, 0, 1, 0, 1, 0]]).repeat(16, 1)
    opt = torch.optim.Adam(backbone.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(60):
        loss = masked_loss(den, data, generator=g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10  # from ~6 ln 2 towards ln 2
    # the D3PM losses run through the same wrapper, with gradients (uniform: no SUBS; absorbing: SUBS)
    for proc in (Uniform(2, T=10), Absorbing(2, T=10)):
        net = tiny(vocab_size=proc.num_classes, seq_len=6)
        loss = d3pm_loss(BackboneDenoiser(net, proc), data[:4], generator=g, hybrid_weight=0.01).mean()
        loss.backward()
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        assert torch.isfinite(loss) and grads and all(torch.isfinite(gr).all() for gr in grads)
