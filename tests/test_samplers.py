"""Every sampler against ground truth: the exact probability-flow map and the exact law of a Gaussian mixture."""

import math

import numpy as np
import pytest
import torch

from torchdiffusion.analytic import GaussianMixture
from torchdiffusion.denoiser import CountingDenoiser
from torchdiffusion.sampling import (METHODS, budget_grid, calibrate_grid, default_grid, grids, resolve_knee,
                                    resolve_tail, sample)
from torchdiffusion.sampling.adaptive import B4, B5, A, C
from torchdiffusion.sampling.lms import lms_coefficients

from test_ddpm_ddim import pf_ode_reference

ODE_FIXED = [name for name, m in METHODS.items() if m.kind == "ODE" and m.evals_per_step is not None]
_REFERENCES: dict = {}


def flow_map(gmm, x, sigma_max, sigma_min):
    """The exact flow map (DOP853 at 1e-12), cached across tests since it is the slow part."""
    key = (sigma_max, sigma_min, tuple(x.shape), float(x.sum()))
    if key not in _REFERENCES:
        _REFERENCES[key] = pf_ode_reference(gmm, x, sigma_max, sigma_min)
    return _REFERENCES[key]


def median_error(a, b):
    # Starts that pass near a separatrix between modes have a huge error constant (the flow there is unstable) and
    # only reach the asymptotic regime at tiny steps; the median per-sample distance shows the order of the rest.
    return (a - b).reshape(len(a), -1).norm(dim=1).median().item()


# grid sizes (steps) where each method is in its asymptotic regime on [0.002, 80] yet far above round-off
STEPS = {1: [32, 64, 128, 256], 2: [32, 64, 128, 256], 3: [32, 64, 128, 256], 4: [16, 32, 64, 128]}
STEPS_OF = {"lms": [64, 128, 256, 512]}  # 4-step Adams-Bashforth reaches order 4 late (its first steps are lower order)


@pytest.mark.parametrize("name", ODE_FIXED)
def test_deterministic_samplers_converge_to_the_exact_flow_map_at_their_order(gmm, name):
    m = METHODS[name]
    smax, smin = 80.0, 0.002
    x = torch.randn(128, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * smax
    ref = flow_map(gmm, x, smax, smin)
    steps = STEPS_OF.get(name, STEPS[m.order])
    # log-uniform grid ending at sigma_min, no final step to 0: every step is the method's own
    errs = [median_error(m.fn(gmm, x, grids.exponential(n + 1, smin, smax)[:-1]), ref) for n in steps]
    nfe = [n * m.evals_per_step for n in steps]
    slope = np.polyfit(np.log(nfe), np.log(errs), 1)[0]
    assert abs(-slope - m.order) <= 0.3, (name, errs, slope)
    assert errs[-1] < 0.02


@pytest.mark.parametrize("name", ODE_FIXED)
def test_deterministic_samplers_reach_sigma_zero(gmm, name):
    """Through `sample` the grid ends in 0, and the result approaches the exact map from 80 to 0."""
    x = torch.randn(128, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 80
    ref = flow_map(gmm, x, 80.0, 0.002)
    ref = gmm(ref, 0.002)  # from sigma_min to 0: E[x0 | x], the ODE's limit up to O(sigma_min^2)
    out = sample(gmm, x, method=name, nfe=200, sigma_min=0.002, sigma_max=80.0)
    assert median_error(out, ref) < 0.02


def test_first_order_methods_agree_to_round_off(gmm):
    """DPM-Solver-1 (exponential integrator with eps), Euler in sigma and DDIM(eta = 0) are the same update."""
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 80
    s = grids.karras(12, 0.002, 80.0)
    ddim = METHODS["ddim"].fn(gmm, x, s)
    for name in ("euler", "dpm_solver_1"):
        assert torch.allclose(METHODS[name].fn(gmm, x, s), ddim, rtol=0, atol=1e-12), name


def test_special_cases_reduce_to_their_parents(gmm):
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 80
    s = grids.karras(15, 0.002, 80.0)
    dpmpp_2m = METHODS["dpmpp_2m"].fn(gmm, x, s)
    # SDE-DPM-Solver++(2M) without noise and UniPC without its corrector (bh2 predictor) are DPM-Solver++(2M)
    assert torch.allclose(METHODS["dpmpp_2m_sde"].fn(gmm, x, s, eta=0.0), dpmpp_2m, rtol=0, atol=1e-12)
    assert torch.allclose(METHODS["unipc"].fn(gmm, x, s, corrector=False), dpmpp_2m, rtol=0, atol=1e-12)
    # Euler-ancestral with eta is DDIM with eta: same split into sigma_down and sigma_up, same noise
    for eta in (0.5, 1.0):
        a = METHODS["euler_ancestral"].fn(gmm, x, s, eta=eta, generator=torch.Generator().manual_seed(3))
        b = METHODS["ddim"].fn(gmm, x, s, eta=eta, generator=torch.Generator().manual_seed(3))
        assert torch.allclose(a, b, rtol=0, atol=1e-10)
    # first-order multistep is Euler
    for name in ("lms", "ipndm"):
        assert torch.allclose(METHODS[name].fn(gmm, x, s, order=1), METHODS["euler"].fn(gmm, x, s), rtol=0, atol=1e-12)
    # EDM's sampler without churn is Heun
    assert torch.allclose(METHODS["edm_stochastic"].fn(gmm, x, s, s_churn=0.0), METHODS["heun"].fn(gmm, x, s),
                          rtol=0, atol=1e-12)


def test_dormand_prince_tableau_satisfies_its_order_conditions():
    c, b5, b4 = np.array(C), np.array(B5), np.array(B4)
    Am = np.zeros((7, 7))
    for i, row in enumerate(A):
        Am[i, :len(row)] = row
    assert np.allclose(Am.sum(1), c)  # row sums are the nodes
    for k in range(5):  # bushy-tree conditions sum b c^k = 1 / (k + 1)
        assert math.isclose(b5 @ c**k, 1 / (k + 1), abs_tol=1e-14)
        if k < 4:
            assert math.isclose(b4 @ c**k, 1 / (k + 1), abs_tol=1e-14)
    assert math.isclose(b5 @ Am @ c, 1 / 6, abs_tol=1e-14) and math.isclose(b4 @ Am @ c, 1 / 6, abs_tol=1e-14)
    assert math.isclose(b5 @ Am @ Am @ c, 1 / 24, abs_tol=1e-14) and math.isclose(b5 @ Am @ c**3, 1 / 20, abs_tol=1e-14)
    assert np.allclose(Am[6], b5)  # first same as last


def test_lms_coefficients_integrate_polynomials_exactly():
    nodes, a, b = [1.0, 1.7, 2.9, 4.0], 1.0, 0.4
    for deg in range(4):
        exact = (b ** (deg + 1) - a ** (deg + 1)) / (deg + 1)
        assert math.isclose(sum(c * t**deg for c, t in zip(lms_coefficients(nodes, a, b), nodes)), exact, abs_tol=1e-13)


def test_adaptive_solver_meets_its_tolerance_and_reports_its_calls(gmm):
    smax, smin = 80.0, 0.002
    x = torch.randn(128, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * smax
    ref = flow_map(gmm, x, smax, smin)
    results = []
    for tol in (1e-4, 1e-7):
        counted, stats = CountingDenoiser(gmm), {}
        out = METHODS["dopri5"].fn(counted, x, torch.tensor([smax, smin]), rtol=tol, atol=tol, stats=stats)
        assert stats["nfe"] == counted.calls and stats["rejected"] >= 0
        results.append((median_error(out, ref), counted.calls))
    (loose_err, loose_calls), (tight_err, tight_calls) = results
    assert tight_err < 1e-5 and tight_err < loose_err / 30 and loose_calls < tight_calls
    # with a budget it stops spending at nfe and still lands near the map
    counted = CountingDenoiser(gmm)
    out = sample(counted, x, method="dopri5", nfe=40, sigma_min=smin, sigma_max=smax, rtol=1e-7, atol=1e-7)
    assert counted.calls <= 40 and torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(METHODS))
def test_sample_never_exceeds_the_budget_and_uses_it(gmm, name):
    m = METHODS[name]
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 80
    for nfe in (5, 10, 20, 50):
        sigmas_seen = []

        def D(x, sigma):
            sigmas_seen.append(sigma)
            return gmm(x, sigma)

        out = sample(D, x, method=name, nfe=nfe, sigma_min=0.002, sigma_max=80.0,
                     generator=torch.Generator().manual_seed(1))
        assert len(sigmas_seen) <= nfe and torch.isfinite(out).all()
        assert all(s.shape == (8,) for s in sigmas_seen)
        if m.evals_per_step is not None:  # no coarser step count would fit: the budget is used up to one step
            assert len(sigmas_seen) > nfe - m.evals_per_step, (nfe, len(sigmas_seen))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_dtype_is_preserved(gmm, name):
    class Mixture32:  # a denoiser that computes in float64 and answers in the input's dtype
        def __call__(self, x, sigma):
            return gmm(x.double(), sigma.double()).to(x.dtype)

    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(0)) * 80
    for dtype in (torch.float32, torch.float64):
        out = sample(Mixture32(), x.to(dtype), method=name, nfe=20, sigma_min=0.002, sigma_max=80.0,
                     generator=torch.Generator().manual_seed(1))
        assert out.dtype == dtype and out.device == x.device and torch.isfinite(out).all()


def law_matches(gmm, out, target, n_ref=200_000, logp_tol=0.05, sigma=0.0):
    """Mean, covariance, mode weights and mean exact log-density of `out` against draws from `target`."""
    n = len(out)
    ref, _ = target.sample(n_ref, generator=torch.Generator().manual_seed(123))
    se = ref.std(0) / math.sqrt(n)
    assert ((out.mean(0) - target.mean()).abs() < 5 * se).all(), (out.mean(0), target.mean())
    assert torch.allclose(torch.cov(out.T), target.covariance(), atol=0.06)
    modes = lambda y: torch.bincount(gmm.responsibilities(y, sigma).argmax(1), minlength=len(gmm.weights)).double()
    expected = n * modes(ref) / n_ref
    chi2 = ((modes(out) - expected) ** 2 / expected).sum().item()
    assert chi2 < 13.8, chi2  # 2 degrees of freedom, p = 0.001
    assert target.log_prob(out).mean().item() == pytest.approx(target.log_prob(ref).mean().item(), abs=logp_tol)


# (method, options, grid, steps): enough steps that each sampler's discretisation bias is below the tolerances
STOCHASTIC = [
    ("euler_ancestral", {}, "exponential", 1000),
    ("dpmpp_2s_ancestral", {}, "exponential", 200),
    ("dpmpp_2m_sde", {}, "exponential", 200),
    ("edm_stochastic", {}, "karras", 100),
    ("em", {}, "exponential", 1000),
    ("pc", {}, "exponential", 300),
    ("pc", {"form": "vp"}, "exponential", 600),
]


@pytest.mark.parametrize("name,options,grid,steps", STOCHASTIC, ids=[f"{s[0]}{s[1]}" for s in STOCHASTIC])
def test_stochastic_samplers_reproduce_the_mixture(gmm, name, options, grid, steps):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5000, 2, generator=gen, dtype=torch.float64) * 80
    out = METHODS[name].fn(gmm, x, getattr(grids, grid)(steps, 0.002, 80.0), generator=gen, **options)
    law_matches(gmm, out, gmm)


def test_annealed_langevin_samples_the_noisy_marginal_of_its_last_level(gmm):
    """Without a final 0, ALD targets p_sigma_L: the mixture with variances var + sigma_L^2."""
    sL, gen = 0.1, torch.Generator().manual_seed(0)
    target = GaussianMixture(gmm.weights, gmm.means, gmm.variances + sL**2)
    x = torch.randn(5000, 2, generator=gen, dtype=torch.float64) * 20
    out = METHODS["ald"].fn(gmm, x, grids.exponential(20, sL, 20.0)[:-1], generator=gen, eps=0.5 * sL**2, n_steps=50)
    law_matches(gmm, out, target, sigma=sL)


def test_calibrated_grid_beats_the_default_grid_on_held_out_starts(gmm):
    smax, smin, nfe = 80.0, 0.002, 10
    x_cal = torch.randn(128, 2, generator=torch.Generator().manual_seed(10), dtype=torch.float64) * smax
    x_test = torch.randn(256, 2, generator=torch.Generator().manual_seed(11), dtype=torch.float64) * smax
    counted = CountingDenoiser(gmm)
    sigmas, info = calibrate_grid(counted, x_cal, method="dpmpp_2m", nfe=nfe, sigma_min=smin, sigma_max=smax,
                                  generator=torch.Generator().manual_seed(0))
    assert info["denoiser_calls"] == counted.calls > 0 and info["error"] <= info["error_start"]
    assert sigmas[0] == smax and sigmas[-2] >= smin and sigmas[-1] == 0 and (sigmas.diff() < 0).all()
    ref = gmm(flow_map(gmm, x_test, smax, smin), smin)
    err = lambda y: (y - ref).norm(dim=1).mean().item()
    calls = CountingDenoiser(gmm)
    calibrated = sample(calls, x_test, method="dpmpp_2m", nfe=nfe, grid=sigmas)
    default = sample(gmm, x_test, method="dpmpp_2m", nfe=nfe, sigma_min=smin, sigma_max=smax)
    assert calls.calls <= nfe
    assert err(calibrated) < 0.8 * err(default), (err(calibrated), err(default))


def test_max_ratio_is_checked(gmm):
    x = torch.randn(4, 2, dtype=torch.float64) * 80
    for bad in (1.0, 0.5, float("nan")):
        with pytest.raises(ValueError, match="max_ratio"):
            sample(gmm, x, method="heun", nfe=10, sigma_min=0.002, sigma_max=80.0, max_ratio=bad)
    with pytest.raises(ValueError, match="unknown option.*max_ratio.*its options are"):
        sample(gmm, x, method="ddim", nfe=10, sigma_min=0.002, sigma_max=80.0, max_ratio=10.0)
    never = sample(gmm, x, method="heun", nfe=10, sigma_min=0.002, sigma_max=80.0, max_ratio=math.inf)
    assert torch.isfinite(never).all()


def test_sample_checks_a_given_grid_against_the_budget(gmm):
    x = torch.zeros(2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="above nfe"):
        sample(gmm, x, method="heun", nfe=5, grid=grids.karras(4, 0.002, 80.0))  # 3 * 2 + 1 = 7 calls
    for method in ("dopri5", "euler"):
        with pytest.raises(ValueError, match="nfe must be"):
            sample(gmm, x, method=method, nfe=0)
    # one call is always enough: the step from sigma_max straight to 0 lands on D
    assert torch.equal(sample(gmm, x, method="heun", nfe=1, sigma_min=0.002, sigma_max=80.0), gmm(x, 80.0))


# ---------------------------------------------------------------- grid tail


class Recording:
    """Records the noise levels a denoiser is asked at; other attributes (sigma_data) pass through."""

    def __init__(self, denoiser):
        self.denoiser, self.sigmas = denoiser, []

    def __call__(self, x, sigma):
        self.sigmas.append(float(sigma[0]))
        return self.denoiser(x, sigma)

    def __getattr__(self, name):
        return getattr(self.__dict__["denoiser"], name)


def test_default_tail_is_a_fraction_of_sigma_data_that_falls_with_the_budget():
    tails = [grids.default_tail(n, 0.5) for n in range(1, 200)]
    assert all(a >= b for a, b in zip(tails, tails[1:]))
    assert grids.default_tail(5, 0.5) == grids.default_tail(15, 0.5) == pytest.approx(0.02)  # 0.04 sigma_data
    assert grids.default_tail(20, 0.5) == pytest.approx(0.02 * (15 / 20) ** 3)  # then as nfe^-3
    assert grids.default_tail(30, 0.5) == pytest.approx(0.0025) and grids.default_tail(30, 2.0) == 4 * tails[29]
    with pytest.raises(ValueError):
        grids.default_tail(0, 0.5)


def test_exponential_grid_with_a_knee_is_uniform_in_log_sigma_over_sigma_plus_knee():
    smin, smax, knee, n = 0.01, 157.0, 10.0, 12
    s = grids.exponential(n, smin, smax, knee)
    assert s[0] == smax and s[-2] == smin and s[-1] == 0 and len(s) == n + 1
    v = (s[:-1] / (s[:-1] + knee)).log()
    torch.testing.assert_close(v.diff(), torch.full((n - 1,), float(v.diff()[0]), dtype=torch.float64))
    steps = (s[:-2] / s[1:-1]).log()  # log-sigma steps: coarse above the knee, log-uniform well below it
    assert (steps.diff() < 0).all() and steps[0] > 2 * steps[-1]
    assert float(steps[-1]) == pytest.approx(float(steps[-2]), rel=0.01)
    # an infinite knee is the log-uniform grid; a far knee approaches it
    plain = grids.exponential(n, smin, smax)
    assert torch.equal(grids.exponential(n, smin, smax, math.inf), plain)
    torch.testing.assert_close(grids.exponential(n, smin, smax, 1e9), plain, rtol=1e-6, atol=0)
    for bad in [(0, smin, smax, knee), (n, 0.0, smax, knee), (n, smax, smin, knee), (n, smin, smax, 0.0)]:
        with pytest.raises(ValueError):
            grids.exponential(*bad)


def test_exponential_grid_caps_its_first_step_and_keeps_the_rest_of_its_shape():
    smin, smax, knee, n = 0.02, 152.0, 5.0, 20
    free = grids.exponential(n, smin, smax, knee)
    assert float(free[0] / free[1]) > 10  # the knee makes one long first step (152 -> 13 on toy2d's range)
    s = grids.exponential(n, smin, smax, knee, first=3.0)
    assert len(s) == n + 1 and s[0] == smax and s[-2] == smin and s[-1] == 0 and (s.diff() < 0).all()
    assert float(s[0] / s[1]) == pytest.approx(3.0)
    torch.testing.assert_close(s[1:], grids.exponential(n - 1, smin, smax / 3, knee), rtol=0, atol=0)
    # a first step already within the cap, too few levels, or a cap below sigma_min: the grid unchanged
    assert torch.equal(grids.exponential(n, smin, smax, first=3.0), grids.exponential(n, smin, smax))
    assert torch.equal(grids.exponential(2, smin, smax, knee, first=3.0), grids.exponential(2, smin, smax, knee))
    assert torch.equal(grids.exponential(n, 1.0, 2.5, 0.1, first=3.0), grids.exponential(n, 1.0, 2.5, 0.1))
    with pytest.raises(ValueError, match="first > 1"):
        grids.exponential(n, smin, smax, knee, first=1.0)


def test_default_exponential_grid_has_its_knee_at_ten_sigma_data(gmm):
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 80
    for name in ("unipc", "dpmpp_2m", "ipndm"):
        D = Recording(gmm)
        sample(D, x, method=name, nfe=12, sigma_min=0.002, sigma_max=80.0)
        want = grids.exponential(12, grids.default_tail(12, gmm.sigma_data), 80.0, 10 * gmm.sigma_data, first=3.0)
        torch.testing.assert_close(torch.tensor(D.sigmas, dtype=torch.float64), want[:-1], rtol=1e-12, atol=0)
        assert resolve_knee(gmm, METHODS[name]) == 10 * gmm.sigma_data
    # no sigma_data, a stochastic method or a Karras-family method: no knee
    assert resolve_knee(lambda x, s: gmm(x, s), METHODS["unipc"]) is None
    assert resolve_knee(gmm, METHODS["dpmpp_2m_sde"]) is None and resolve_knee(gmm, METHODS["heun"]) is None
    with pytest.raises(ValueError, match="exponential grid only"):
        default_grid(gmm, 5, 0.002, 80.0, "karras", None, 3.0)


@pytest.mark.parametrize("nfe", [1, 2, 5, 10, 20, 50])
@pytest.mark.parametrize("name", [n for n in ODE_FIXED if METHODS[n].grid != "fewstep"])
def test_default_grid_with_its_tail_fits_the_budget_decreases_and_ends_in_0(gmm, name, nfe):
    """(A student's few-step grid is the one it was trained on and has no tail: test_fewstep.py.)"""
    m = METHODS[name]
    smin, smax = 0.002, 80.0
    steps = m.steps_for(nfe)
    if steps < 1:
        return
    last = resolve_tail(gmm, m, nfe, None)
    assert last == grids.default_tail(nfe, gmm.sigma_data)
    sigmas = default_grid(gmm, steps, smin, smax, m.grid, last)
    assert sigmas[0] == pytest.approx(smax) and sigmas[-1] == 0 and (sigmas.diff() < 0).all()
    assert m.calls(sigmas) <= nfe
    if steps > 1:
        assert sigmas[-2] == pytest.approx(max(smin, last))
    counted = CountingDenoiser(gmm)
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * smax
    out = sample(counted, x, method=name, nfe=nfe, sigma_min=smin, sigma_max=smax)
    assert counted.calls <= nfe and torch.isfinite(out).all()


def test_the_tail_option_is_honoured_and_explicit(gmm):
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 80
    kw = dict(method="euler", nfe=10, sigma_min=0.002, sigma_max=80.0)
    for tail, last in [(None, grids.default_tail(10, gmm.sigma_data)), (0.3, 0.3), (0.0, 0.002), (1e-4, 0.002)]:
        D = Recording(gmm)
        sample(D, x, tail=tail, **kw)
        assert len(D.sigmas) == 10 and D.sigmas[0] == pytest.approx(80.0) and D.sigmas[-1] == pytest.approx(last)
    # without a sigma_data there is no rule: the grid ends at sigma_min, as do stochastic methods' default grids
    D = Recording(lambda x, s: gmm(x, s))
    sample(D, x, **kw)
    assert D.sigmas[-1] == pytest.approx(0.002)
    D = Recording(gmm)
    sample(D, x, method="euler_ancestral", nfe=10, sigma_min=0.002, sigma_max=80.0, generator=torch.Generator())
    assert D.sigmas[-1] == pytest.approx(0.002)
    with pytest.raises(ValueError, match="not both"):
        sample(gmm, x, method="euler", grid=grids.karras(5, 0.002, 80.0), tail=0.1)
    with pytest.raises(ValueError, match="below sigma_max"):
        sample(gmm, x, tail=100.0, **kw)


def test_a_discrete_model_gets_the_rule_grid_at_its_own_table_levels(gmm):
    from torchdiffusion.processes import DiscreteVP
    from torchdiffusion.schedules import make_betas

    p = DiscreteVP(make_betas("linear", 1000))

    class Discrete:  # a discrete-time model: D is only trained at the table's levels
        sigma_table, sigma_data = p.sigmas_ve, 0.5  # the denoiser contract: its own table of levels
        sigma_min, sigma_max = float(p.sigmas_ve[0]), float(p.sigmas_ve[-1])

        def __call__(self, x, sigma):
            assert torch.isin(sigma.double(), p.sigmas_ve.double()).all()
            return gmm(x, sigma)

    model = Discrete()
    for nfe in (5, 10, 20, 50):
        sigmas = default_grid(model, METHODS["ipndm"].steps_for(nfe), model.sigma_min, model.sigma_max, "exponential",
                              grids.default_tail(nfe, 0.5))
        assert torch.isin(sigmas[:-1], p.sigmas_ve.double()).all() and sigmas[-1] == 0 and (sigmas.diff() < 0).all()
        x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * model.sigma_max
        counted = CountingDenoiser(model)
        sample(counted, x, method="ipndm", nfe=nfe)
        assert counted.calls <= nfe
    # stochastic and Karras-family methods (DDIM, LMS: better on it) keep the trailing respacing of the table
    trailing = grids.discrete_sigmas(p.sigmas_ve, 10, "trailing")
    assert torch.equal(default_grid(model, 10, model.sigma_min, model.sigma_max), trailing)
    for name in ("ddim", "lms", "euler_ancestral"):
        assert resolve_tail(model, METHODS[name], 10, None) is None
        D = Recording(model)
        sample(D, x, method=name, nfe=10, generator=torch.Generator())
        assert torch.allclose(torch.tensor(D.sigmas, dtype=torch.float64), trailing[:-1])
    assert resolve_tail(model, METHODS["ddim"], 10, 0.5) == 0.5  # an explicit tail is always honoured


@pytest.mark.parametrize("name", ["ddim", "lms", "euler_ancestral", "unipc"])
def test_a_discrete_model_honours_a_given_sigma_range(gmm, name):
    """sample(sigma_max=s) on a DDPM-table model starts at the table level nearest s (and sigma_min ends it), for
    the trailing-table methods (Karras family, stochastic) as for the rule's grid: the trailing grid once ignored
    both and started at the table's top (20291 on the cosine table) from a state at s."""
    from torchdiffusion.processes import DiscreteVP
    from torchdiffusion.schedules import make_betas

    p = DiscreteVP(make_betas("cosine", 1000))
    table = p.sigmas_ve.double()

    class Discrete:
        sigma_table, sigma_data = p.sigmas_ve, gmm.sigma_data
        sigma_min, sigma_max = float(p.sigmas_ve[0]), float(p.sigmas_ve[-1])

        def __call__(self, x, sigma):
            assert torch.isin(sigma.double(), table).all()
            return gmm(x, sigma)

    s_max, s_min = 5.0, 0.05
    top = float(table[(table.log() - math.log(s_max)).abs().argmin()])
    bottom = float(table[(table.log() - math.log(s_min)).abs().argmin()])
    x = gmm.sample(256, generator=torch.Generator().manual_seed(0))[0]
    x = x + s_max * torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    D = Recording(Discrete())
    out = sample(D, x, method=name, nfe=20, sigma_max=s_max, sigma_min=s_min, generator=torch.Generator())
    assert D.sigmas[0] == pytest.approx(top) and max(D.sigmas) <= top * (1 + 1e-9)
    assert min(D.sigmas) >= bottom * (1 - 1e-9) and len(D.sigmas) <= 20
    if name == "ddim":  # the range's levels [bottom, top] respaced with trailing spacing, like the whole table
        sub = table[(table >= bottom) & (table <= top)]
        want = grids.discrete_sigmas(sub, 20, "trailing")[:-1]
        assert torch.allclose(torch.tensor(D.sigmas, dtype=torch.float64), want)
    # the whole range by default: the full trailing table, as before
    D = Recording(Discrete())
    sample(D, x * 0 + float(table[-1]), method="ddim", nfe=10)
    want = grids.discrete_sigmas(table, 10, "trailing")[:-1]
    assert torch.allclose(torch.tensor(D.sigmas, dtype=torch.float64), want)
    # the samples are the mixture's: a deterministic run from s = 5 keeps the draws near their start
    if name in ("ddim", "lms", "unipc"):
        assert torch.isfinite(out).all() and (out - x).norm(dim=1).mean() < 2 * s_max * math.sqrt(x.shape[1])


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
@pytest.mark.parametrize("nfe", [10, 20])
def test_discrete_default_grid_spends_the_whole_budget(schedule, nfe):
    """Snapping to a table never merges two steps, even where the table is sparse (the cosine table's top)."""
    from torchdiffusion.denoiser import CountingDenoiser
    from torchdiffusion.model_denoiser import ModelDenoiser
    from torchdiffusion.nn import MLP, MLPConfig
    from torchdiffusion.processes import DiscreteVP
    from torchdiffusion.sampling import sample
    from torchdiffusion.schedules import make_betas

    model = ModelDenoiser(MLP(MLPConfig(dim=2)), DiscreteVP(make_betas(schedule, 1000)))
    d = CountingDenoiser(model)
    with torch.no_grad():
        sample(d, torch.randn(3, 2) * model.sigma_max, method="unipc", nfe=nfe)
    assert d.calls == nfe


@pytest.mark.parametrize("name", sorted(METHODS))
def test_memory_is_flat_in_the_number_of_steps(gmm, name):
    """The live state-sized tensors stay constant from step to step: history is a bounded window, never a list."""
    import gc
    import warnings

    x = torch.randn(13, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 80
    counts = []

    def count(state):
        i = state["i"]
        if i >= 4 and i & (i - 1) == 0:  # steps 4, 8, 16, ...: past any multistep warm-up; gc.get_objects is slow
            with warnings.catch_warnings():  # isinstance on deprecated torch aliases warns
                warnings.simplefilter("ignore")
                counts.append(sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor) and o.shape == x.shape))

    tol = {"rtol": 1e-9, "atol": 1e-9} if name == "dopri5" else {}
    sample(gmm, x, method=name, nfe=120, sigma_min=0.002, sigma_max=80.0, callback=count,
           generator=torch.Generator().manual_seed(1), **tol)
    assert len(counts) >= 3, counts
    assert max(counts) - min(counts) <= 1, counts  # a history list would grow 4-fold from step 4 to step 16


def test_no_ode_method_diverges_on_a_cosine_table_reaching_sigma_20291(gmm):
    """A cosine DDPM table's top step (trailing: 20291 -> 3.8) once made Heun and RK4 miss by 1e3 here (DPM-Solver-2/3
    on a trained model); long steps are now taken first order (`common.first_order`): every fixed-step ODE method
    stays within 2.5x DDIM's error at NFE 10 and 20 on the exact mixture behind that table, within a step of its
    budget."""
    from torchdiffusion.processes import DiscreteVP
    from torchdiffusion.schedules import make_betas

    p = DiscreteVP(make_betas("cosine", 1000))

    class Discrete:
        sigma_table, sigma_data = p.sigmas_ve, gmm.sigma_data  # the denoiser contract: its own table
        sigma_min, sigma_max = float(p.sigmas_ve[0]), float(p.sigmas_ve[-1])

        def __call__(self, x, sigma):
            return gmm(x, sigma)

    model = Discrete()
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * model.sigma_max
    ref = gmm(flow_map(gmm, x, model.sigma_max, model.sigma_min), model.sigma_min)
    for nfe in (10, 20):
        errs = {}
        for name in ODE_FIXED:
            counted = CountingDenoiser(model)
            out = sample(counted, x, method=name, nfe=nfe)
            errs[name] = (out - ref).norm(dim=1).mean().item()
            assert nfe - METHODS[name].evals_per_step < counted.calls <= nfe, (name, nfe, counted.calls)
        assert max(errs.values()) <= 2.5 * errs["ddim"], (nfe, errs)
        for name in (n for n in ODE_FIXED if METHODS[n].long_steps):  # the most steps that fit, by brute force
            m = METHODS[name]
            tail, knee = resolve_tail(model, m, nfe, None), resolve_knee(model, m)
            fits = [k for k in range(1, nfe + 1)
                    if m.calls(default_grid(model, k, model.sigma_min, model.sigma_max, m.grid, tail, knee)) <= nfe]
            assert len(budget_grid(model, name, nfe)) - 1 == max(fits), (name, nfe, fits)


@pytest.mark.parametrize("name", [n for n, m in METHODS.items() if m.long_steps])
def test_a_long_step_is_first_order_at_one_call_and_the_budget_counts_it(gmm, name):
    """sigma / sigma_next above max_ratio: the step equals DDIM's and costs one call; below it, the method's own."""
    grid = torch.tensor([400.0, 2.0, 1.0, 0.0], dtype=torch.float64)  # ratios 200 (long), 2, then the final step
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 400
    m = METHODS[name]
    extra = {"s_churn": 0.0} if name == "edm_stochastic" else {}  # its Heun step alone
    extra = {"order": 2} if name == "dpm_solver_1" else extra  # DPM-Solver-1 raised to order 2 by its option
    per_step, final = m.budget(extra)
    for max_ratio, long in ((100.0, True), (1000.0, False)):
        counted = CountingDenoiser(gmm)
        out = m.fn(counted, x, grid[:2], max_ratio=max_ratio, **extra)
        ddim = METHODS["ddim"].fn(gmm, x, grid[:2])
        assert torch.allclose(out, ddim, rtol=0, atol=1e-12) == long
        assert counted.calls == (1 if long else per_step)
        assert m.calls(grid, {"max_ratio": max_ratio, **extra}) == (1 if long else per_step) + per_step + final


def test_an_unknown_sampler_option_is_refused_naming_the_methods_options(gmm):
    x = torch.randn(4, 2, dtype=torch.float64) * 80
    with pytest.raises(ValueError, match=r"unknown option\(s\) etta for sampler 'ddim'; its options are: eta"):
        sample(gmm, x, method="ddim", nfe=5, etta=0.5)
    with pytest.raises(ValueError, match="its options are: .*s_churn"):
        sample(gmm, x, method="edm_stochastic", nfe=5, churn=10)
    assert METHODS["pc"].options == ("snr", "n_corrector", "form")  # read from the function's signature


@pytest.mark.parametrize("nfe", [5, 9, 10, 20])
def test_the_default_rule_runs_unipc_at_order_3_from_its_threshold_unless_an_order_is_given(gmm, nfe):
    """`sample` fills UniPC's order from `Method.rule_options` (order 3 from unipc.ORDER_3_FROM steps, else the
    function's order 2); an explicit order wins, and the cost in calls is the same."""
    from torchdiffusion.sampling.unipc import FINAL_ORDER, ORDER_3_FROM

    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 80
    kw = dict(sigma_min=0.002, sigma_max=80.0)
    grid = budget_grid(gmm, "unipc", nfe, **kw)
    want = 3 if len(grid) - 1 >= ORDER_3_FROM else 2
    fin = {"final_order": FINAL_ORDER}  # the rule's last step, extrapolated to sigma = 0, at every order
    by_order = {o: METHODS["unipc"].fn(gmm, x, grid, order=o, **fin) for o in (2, 3)}
    assert not torch.allclose(by_order[2], by_order[3])
    counted = CountingDenoiser(gmm)
    assert torch.equal(sample(counted, x, method="unipc", nfe=nfe, **kw), by_order[want])
    assert counted.calls == nfe
    for o in (2, 3):
        assert torch.equal(sample(gmm, x, method="unipc", nfe=nfe, order=o, **kw), by_order[o])
        assert torch.equal(sample(gmm, x, method="unipc", grid=grid, order=o), by_order[o])
    assert torch.equal(sample(gmm, x, method="unipc", grid=grid), by_order[want])
    plain = sample(gmm, x, method="unipc", grid=grid, final_order=1)  # an explicit final_order wins too
    assert torch.equal(plain, METHODS["unipc"].fn(gmm, x, grid, order=want)) and not torch.equal(plain, by_order[want])
    assert METHODS["dpmpp_3m"].with_rule_options(grid, {}) == {}  # no rule for other methods
