"""Flow matching through the core: the trigonometric interpolant's closed forms, minibatch OT coupling against brute
force, logit-normal times against their density, and config validation of the new keys."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from torchdiffusion.config import ConfigError, RunConfig, validate
from torchdiffusion.losses import couple, ot_permutation, sample_t
from torchdiffusion.losses.denoising import logit_normal_density
from torchdiffusion.processes import Flow, FlowCosine, GaussianProcess


def test_trig_interpolant_is_variance_preserving_with_consistent_closed_forms():
    p = FlowCosine()
    t = torch.linspace(0.01, 0.99, 41, dtype=torch.float64)
    assert torch.allclose(p.alpha(t) ** 2 + p.sigma(t) ** 2, torch.ones_like(t))
    assert torch.allclose(p.t_of_logsnr(p.logsnr(t)), t, atol=1e-12)
    # f and g against the base class's autograd derivations of the same alpha and sigma
    assert torch.allclose(p.f(t), GaussianProcess.f(p, t), rtol=1e-9)
    g_auto = torch.sqrt(-p.sigma(t) ** 2 * GaussianProcess.dlogsnr_dt(p, t))
    assert torch.allclose(p.g(t), g_auto, rtol=1e-9)


def brute_force_ot_cost(x0: torch.Tensor, eps: torch.Tensor) -> float:
    n = len(x0)
    return min(sum(float((x0[i] - eps[j]).pow(2).sum()) for i, j in enumerate(perm))
               for perm in itertools.permutations(range(n))) / n


def test_minibatch_ot_is_the_optimal_permutation_found_by_brute_force(gen):
    for _ in range(3):
        x0 = torch.randn(6, 3, generator=gen, dtype=torch.float64)
        eps = torch.randn(6, 3, generator=gen, dtype=torch.float64)
        j = ot_permutation(x0, eps)
        assert sorted(j.tolist()) == list(range(6))  # a permutation: every noise used once
        cost = float((x0 - eps[j]).pow(2).sum(1).mean())
        assert cost == pytest.approx(brute_force_ot_cost(x0, eps), rel=1e-9)


def test_ot_coupling_reduces_the_mean_transport_cost_of_a_batch(gen):
    sign = torch.randint(0, 2, (256, 1), generator=gen).double() * 2 - 1  # two modes at (+-2, 0)
    x0 = torch.randn(256, 2, generator=gen, dtype=torch.float64) * 0.3 + sign * torch.tensor([2.0, 0.0],
                                                                                              dtype=torch.float64)
    eps = torch.randn(256, 2, generator=gen, dtype=torch.float64)
    independent = (x0 - couple("independent", x0, eps)).pow(2).sum(1).mean()
    ot = (x0 - couple("ot", x0, eps)).pow(2).sum(1).mean()
    assert ot < 0.5 * independent  # W2^2 of the batch vs the cost of a random pairing
    # the coupling keeps the noise's empirical distribution: the same rows, reordered
    assert torch.equal(couple("ot", x0, eps).sort(0).values, eps.sort(0).values)
    with pytest.raises(ValueError, match="unknown coupling"):
        couple("sinkhorn", x0, eps)


def test_logit_normal_density_integrates_to_one_and_matches_samples():
    u = torch.linspace(1e-6, 1 - 1e-6, 200_001, dtype=torch.float64)
    for mean, std in [(0.0, 1.0), (0.5, 0.7)]:
        assert float(torch.trapezoid(logit_normal_density(u, mean, std), u)) == pytest.approx(1.0, abs=1e-4)
    p = Flow(t_min=0.0, t_max=1.0)
    t = sample_t(p, 200_000, generator=torch.Generator().manual_seed(0), method="logit_normal")
    edges = torch.linspace(0, 1, 11, dtype=torch.float64)
    counts = torch.histc(t, bins=10, min=0, max=1) / len(t)
    for k in range(10):  # each bin's mass against the density's integral over it
        grid = torch.linspace(float(edges[k]) + 1e-9, float(edges[k + 1]) - 1e-9, 2001, dtype=torch.float64)
        mass = float(torch.trapezoid(logit_normal_density(grid), grid))
        assert float(counts[k]) == pytest.approx(mass, abs=4 * math.sqrt(mass / len(t)) + 1e-4)


def config(**sections) -> RunConfig:
    from torchdiffusion.typed_dict import from_dict

    base = {"data": {"name": "toy:moons"}, "model": {"backbone": "mlp", "params": {"dim": 2}}}
    for k, v in sections.items():
        base.setdefault(k, {}).update(v)
    return from_dict(RunConfig, base)


def test_ot_coupling_and_consistency_training_are_validated():
    validate(config(process={"name": "flow"}, model={"prediction": "velocity"}, loss={"coupling": "ot",
                                                                                          "t_sampling": "logit_normal"}))
    validate(config(process={"name": "flow_cosine"}, model={"prediction": "velocity"}, loss={"coupling": "ot"}))
    with pytest.raises(ConfigError, match="loss.coupling: 'ot'"):
        validate(config(process={"name": "vp"}, loss={"coupling": "ot"}))
    with pytest.raises(ConfigError, match="loss.coupling"):
        validate(config(process={"name": "flow"}, loss={"coupling": "optimal"}))
    with pytest.raises(ConfigError, match="model.prediction 'consistency'"):
        validate(config(process={"name": "edm"}, loss={"kind": "consistency"}))
    with pytest.raises(ConfigError, match="continuous process"):
        validate(config(process={"name": "ddpm"}, model={"prediction": "consistency"}, loss={"kind": "consistency"}))
    validate(config(process={"name": "edm"}, model={"prediction": "consistency"}, loss={"kind": "consistency"},
                    sample={"sampler": "consistency", "steps": 2}))
