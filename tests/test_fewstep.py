"""Few-step generation against closed forms: the consistency boundary condition, the few-step samplers' cost and
their equivalence to Euler in flow time, progressive distillation's target, straightness of known paths, iCT's
schedule, and each distiller's loss going down on the analytic mixture."""

from __future__ import annotations

import math

import pytest
import torch

from torchdiffusion.analytic import GaussianMixture
from torchdiffusion.denoiser import CountingDenoiser
from torchdiffusion.distill import (ConsistencyDistiller, ProgressiveDistiller, ReflowDistiller, ddim_step, fit,
                                    progressive_target, reflow_pairs, straightness)
from torchdiffusion.losses.consistency import ict_level_probs, ict_num_levels, karras_levels
from torchdiffusion.model_denoiser import ModelDenoiser
from torchdiffusion.nn.mlp import MLP, MLPConfig
from torchdiffusion.processes import EDM, Flow
from torchdiffusion.sampling import grids, sample


def mlp_model(process, prediction: str) -> ModelDenoiser:
    torch.manual_seed(0)
    return ModelDenoiser(MLP(MLPConfig(dim=2, hidden=32, depth=2)), process, prediction)


def test_consistency_parameterisation_is_the_identity_at_sigma_min():
    model = mlp_model(EDM(), "consistency")
    x = torch.randn(16, 2)
    assert torch.equal(model(x, torch.full((16,), model.sigma_min)), x)  # f(x, sigma_min) = x, any network
    c_skip, c_out, _, _ = model.parameterization.scalings(torch.tensor([80.0], dtype=torch.float64))
    assert float(c_skip) < 1e-4 and float(c_out) == pytest.approx(0.5 * (80 - 0.002) / math.hypot(80, 0.5))


def test_fewstep_grids_nest_and_are_uniform_in_flow_time():
    for n in (1, 2, 4, 8):
        g, g2 = grids.fewstep(n, 0.0, 80.0), grids.fewstep(2 * n, 0.0, 80.0)
        assert len(g) == n + 1 and g[-1] == 0 and torch.allclose(g, g2[::2])
        u = g[:-1] / (1 + g[:-1])
        assert torch.allclose(u[:-1] - u[1:], torch.full((n - 1,), float(u[0]) / n, dtype=torch.float64))


@pytest.mark.parametrize("method", ["consistency", "ddim_fewstep"])
def test_a_student_sampler_runs_on_the_fewstep_grid_without_tail(gmm, method):
    from torchdiffusion.sampling import budget_grid

    for n in (1, 2, 5):
        assert torch.equal(budget_grid(gmm, method, n, sigma_max=80.0), grids.fewstep(n, 0.0, 80.0))


@pytest.mark.parametrize("method", ["consistency", "ddim_fewstep"])
def test_a_student_sampler_with_n_steps_makes_n_calls(gmm, method):
    for n in (1, 2, 3):
        counted = CountingDenoiser(gmm)
        sample(counted, torch.randn(8, 2, dtype=torch.float64) * 80, method=method, nfe=n)
        assert counted.calls == n


def test_one_consistency_step_is_the_denoiser_at_sigma_max(gmm):
    x = torch.randn(8, 2, dtype=torch.float64) * 80
    out = sample(gmm, x, method="consistency", nfe=1, sigma_max=80.0)
    assert torch.allclose(out, gmm(x, 80.0))


def test_ddim_on_the_fewstep_grid_is_euler_in_flow_time(gmm):
    """y = (1 - t) x with sigma = t / (1 - t) obeys dy/dt = (y - D) / t; its Euler steps on a uniform t grid are
    DDIM's steps on the few-step grid (Liu et al. 2023)."""
    smax, n = 1e3, 4
    x = torch.randn(8, 2, dtype=torch.float64) * smax
    out = sample(gmm, x, method="ddim_fewstep", nfe=n, sigma_max=smax)
    t = (grids.fewstep(n, 0.0, smax) / (1 + grids.fewstep(n, 0.0, smax))).tolist()
    y = (1 - t[0]) * x
    for a, b in zip(t[:-1], t[1:]):
        y = y + (b - a) * (y - gmm(y / (1 - a), a / (1 - a))) / a
    assert torch.allclose(out, y, atol=1e-10)


def test_progressive_target_makes_one_student_step_equal_two_teacher_steps(gmm):
    z = torch.randn(16, 2, dtype=torch.float64) * 3
    s, s_mid, s_next = (torch.full((16,), v, dtype=torch.float64) for v in (3.0, 1.2, 0.4))
    target = progressive_target(gmm, z, s, s_mid, s_next)
    two = ddim_step(gmm, ddim_step(gmm, z, s, s_mid), s_mid, s_next)
    one = target + (0.4 / 3.0) * (z - target)  # a student DDIM step whose x0 is the target
    assert torch.allclose(one, two, atol=1e-12)
    last = progressive_target(gmm, z, s, s_mid, torch.zeros(16, dtype=torch.float64))
    assert torch.allclose(last, ddim_step(gmm, ddim_step(gmm, z, s, s_mid), s_mid, torch.zeros(16)))


def test_straightness_of_known_paths():
    z = torch.randn(4000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    point = GaussianMixture(torch.ones(1), torch.zeros(1, 1), 1e-16)  # data at 0: paths are straight lines
    assert straightness(point, z) < 1e-10
    # data N(0, 1): y(t) = c sqrt((1 - t)^2 + t^2), so S = E c^2 int (2t - 1)^2 / ((1 - t)^2 + t^2) dt
    normal = GaussianMixture(torch.ones(1), torch.zeros(1, 1), 1.0)
    t_max = 1 - 1e-3
    c2 = float((z**2).mean()) / ((1 - t_max) ** 2 + t_max**2)
    u = torch.linspace(1e-4, t_max, 100_001, dtype=torch.float64)
    chord = (math.sqrt((1 - t_max) ** 2 + t_max**2) - math.sqrt((1 - 1e-4) ** 2 + 1e-8)) / (t_max - 1e-4)
    dy = (2 * u - 1) / torch.sqrt((1 - u) ** 2 + u**2)
    exact = c2 * float(torch.trapezoid((chord - dy) ** 2, u)) / (t_max - 1e-4)
    assert straightness(normal, z, steps=400) == pytest.approx(exact, rel=1e-3)


def test_ict_curriculum_and_level_distribution():
    assert ict_num_levels(0.0) == 11 and ict_num_levels(1.0) == 1281
    assert [ict_num_levels(k / 8) for k in range(8)] == [11, 21, 41, 81, 161, 321, 641, 1281]
    levels = karras_levels(161, 0.002, 80.0)
    p = ict_level_probs(levels)
    assert float(p.sum()) == pytest.approx(1.0) and bool((p >= 0).all())
    # the mass of each interval is the log-normal's: ln sigma ~ N(-1.1, 2^2)
    cdf = lambda s: 0.5 * (1 + math.erf((math.log(s) + 1.1) / (2 * math.sqrt(2))))  # noqa: E731
    total = cdf(80.0) - cdf(0.002)
    assert float(p[100]) == pytest.approx((cdf(float(levels[101])) - cdf(float(levels[100]))) / total, rel=1e-9)


def mixture_draw(gmm):
    return lambda n, g: (gmm.sample(n, generator=g, dtype=torch.float32)[0], {})


@pytest.mark.parametrize("method", ["progressive", "consistency", "reflow", "reflow_edm"])
def test_each_distiller_lowers_its_loss_on_the_analytic_mixture(gmm, method):
    """A short distillation from the exact mixture teacher: the loss of a fixed evaluation batch goes down. Reflow
    trains a linear flow, or any other parameterisation on the same straight paths (reflow_edm: as `distill` does
    for a teacher that is not a flow, whose student starts as the teacher)."""
    g = torch.Generator().manual_seed(0)
    if method == "progressive":
        student = mlp_model(EDM(), "edm")
        d = ProgressiveDistiller(gmm, student, start_steps=2)  # one round: one loss to compare
    elif method == "consistency":
        student = mlp_model(EDM(), "consistency")
        d = ConsistencyDistiller(gmm, student, levels=8)
    else:
        student = mlp_model(Flow(), "velocity") if method == "reflow" else mlp_model(EDM(), "edm")
        z = torch.randn(512, 2, generator=g)
        d = ReflowDistiller((z, reflow_pairs(gmm, z.double(), nfe=15).float()), student)
    x0 = gmm.sample(512, generator=torch.Generator().manual_seed(1), dtype=torch.float32)[0]

    def eval_loss() -> float:
        with torch.no_grad():
            return float(d.loss(x0, torch.Generator().manual_seed(2)).mean())

    before = eval_loss()
    opt = torch.optim.Adam(student.parameters(), lr=3e-3)
    assert fit(d, mixture_draw(gmm), opt, total=120, batch_size=128, generator=g) == 120
    assert eval_loss() < 0.7 * before
