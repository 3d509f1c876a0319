"""The sampler entry points check what they are given and what the denoiser answers (issue 19).

sample() wraps the denoiser once in CheckedDenoiser: an x0_hat of another shape (which would broadcast into finite,
wrong samples) or dtype is refused for every registered sampler, and so is a NaN or infinite one unless nan="allow";
its own arguments, the sampler options (declarative bounds per option name), generate()'s arguments and the range a
denoiser declares are checked before any work. The checks change no result.
"""

import inspect
import math
import re

import pytest
import torch

from torchdiffusion.build import build_model
from torchdiffusion.config import ModelConfig, ProcessConfig
from torchdiffusion.denoiser import CheckedDenoiser, all_finite, describe
from torchdiffusion.generate import generate
from torchdiffusion.registry import SAMPLERS
from torchdiffusion.sampling import budget_grid, calibrate_grid, grids, sample
from torchdiffusion.sampling.method import FLAGS, NOT_NUMERIC, OPTION_BOUNDS

NAMES = sorted(SAMPLERS)


def start(n: int = 8, d: int = 2) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 80


def run(D, name: str, **kw):
    """A short run of sampler `name` on [0.002, 80] from seeded starts."""
    kw.setdefault("sigma_min", 0.002)
    kw.setdefault("sigma_max", 80.0)
    return sample(D, kw.pop("x", start()), method=name, nfe=kw.pop("nfe", 8),
                  generator=torch.Generator().manual_seed(1), **kw)


# ---------------------------------------------------------------- the denoiser's output


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("cut", [lambda out: out[:, :1], lambda out: out[:1]], ids=["(B, 1)", "(1, D)"])
def test_an_output_that_would_broadcast_is_refused_by_every_sampler(gmm, name, cut):
    def D(x, sigma):
        return cut(gmm(x, sigma))

    want = tuple(cut(start()).shape)
    pattern = rf"shape {re.escape(str(want))} for x of shape \(8, 2\) at sigma=[\d.e+-]+ \(call 1 of sampler '{name}'\)"
    with pytest.raises(ValueError, match=pattern):
        run(D, name)


def test_an_output_of_another_dtype_or_type_is_refused(gmm):
    with pytest.raises(ValueError, match=r"x0_hat is a tensor of dtype int64 and shape \(8, 2\)"):
        run(lambda x, s: gmm(x, s).long(), "ddim")
    with pytest.raises(ValueError, match=r"x0_hat is a list for x of shape \(8, 2\) at sigma=80 "):
        run(lambda x, s: gmm(x, s).tolist(), "ddim")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_output_is_refused_naming_its_sigma(gmm, name, bad):
    seen = []

    def D(x, sigma):
        seen.append(float(sigma[0]))
        out = gmm(x, sigma)
        if seen[-1] < 1.0:  # diverges below sigma = 1, in one entry
            out[0, 1] = bad
        return out

    with pytest.raises(ValueError) as info:
        run(D, name, nfe=60)  # dopri5's steps reach below sigma = 1 within 60 calls
    msg = str(info.value)
    assert f"x0_hat is not finite (NaN or inf in 1 of 16 entries) at sigma={seen[-1]:.6g} " in msg, msg
    assert f"(call {len(seen)} of sampler '{name}')" in msg and "nan='allow'" in msg


def test_nan_allow_runs_on_and_returns_what_the_steps_make(gmm):
    def D(x, sigma):
        return gmm(x, sigma) * (math.nan if float(sigma[0]) < 1.0 else 1.0)

    out = run(D, "heun", nan="allow")
    assert out.shape == (8, 2) and torch.isnan(out).all()
    with pytest.raises(ValueError, match=r"shape \(8, 1\)"):  # the shape is checked whatever the NaN policy
        run(lambda x, s: gmm(x, s)[:, :1], "heun", nan="allow")
    with pytest.raises(ValueError, match="nan must be one of 'raise', 'allow', got 'ignore'"):
        run(gmm, "heun", nan="ignore")


def test_non_finite_samples_from_finite_outputs_are_refused_too():
    """D = 3e38 everywhere is finite in float32, but x - D overflows in the Euler step."""
    def D(x, sigma):
        return torch.full_like(x, 3e38)

    x = torch.full((4, 2), -1e38)
    with pytest.raises(ValueError, match=r"sampler 'euler' produced non-finite samples \(NaN or inf in 8 of 8 "
                                         r"entries\) from finite denoiser outputs"):
        sample(D, x, method="euler", nfe=5)
    assert not torch.isfinite(sample(D, x, method="euler", nfe=5, nan="allow")).any()


class LearnedVariance:
    """The mixture with a learned-variance head whose fraction is given by `frac(x)`."""

    def __init__(self, gmm, frac):
        self.gmm, self.frac = gmm, frac

    def __call__(self, x, sigma):
        return self.gmm(x, sigma)

    def forward_with_variance(self, x, sigma):
        return self.gmm(x, sigma), self.frac(x)


def test_the_learned_variance_path_is_checked_too(gmm):
    ok = run(LearnedVariance(gmm, lambda x: torch.full_like(x, 0.5)), "ddpm", variance="learned")
    assert torch.isfinite(ok).all()
    with pytest.raises(ValueError, match=r"learned-variance fraction is a tensor of dtype float64 and shape \(8, 1\)"):
        run(LearnedVariance(gmm, lambda x: x[:, :1] * 0 + 0.5), "ddpm", variance="learned")
    with pytest.raises(ValueError, match=r"learned-variance fraction is not finite"):
        run(LearnedVariance(gmm, lambda x: torch.full_like(x, math.nan)), "ddpm", variance="learned")


def test_the_wrapper_passes_attributes_through_and_changes_no_output(gmm):
    class Declared:
        sigma_min, sigma_max, sigma_data = 0.01, 20.0, 0.7

        def __call__(self, x, sigma):
            return gmm(x, sigma)

    D = CheckedDenoiser(Declared())
    assert describe(D) == describe(Declared()) and D.sigma_data == 0.7
    x = start()
    out = D(x, torch.full((8,), 3.0, dtype=torch.float64))
    assert torch.equal(out, gmm(x, 3.0))


@pytest.mark.parametrize("name", ["ddim", "heun", "dpmpp_2m", "unipc", "euler_ancestral", "dpmpp_2m_sde", "pc"])
def test_the_checks_change_no_result(gmm, name):
    """sample() (checks on) equals the bare sampler function on the same grid and noise, bit for bit."""
    x = start(64)
    grid = budget_grid(gmm, name, 12, sigma_min=0.002, sigma_max=80.0)
    checked = sample(gmm, x, method=name, grid=grid, generator=torch.Generator().manual_seed(3))
    options = SAMPLERS[name].with_rule_options(grid, {})  # the default rule's options (UniPC's order), as sample()
    bare = SAMPLERS[name].fn(gmm, x, grid, generator=torch.Generator().manual_seed(3), **options)
    assert torch.equal(checked, bare)


def test_all_finite_is_exact_where_the_sum_overflows():
    big = torch.full((4,), 3e38)  # finite entries whose float32 sum is inf
    assert all_finite(big) and all_finite(torch.zeros(0))
    for bad in (math.nan, math.inf, -math.inf):
        assert not all_finite(torch.tensor([1.0, bad, 2.0], dtype=torch.float16))
    assert not all_finite(torch.tensor([math.inf, -math.inf]))  # a sum that is NaN, not inf
    assert all_finite(torch.ones(3, requires_grad=True) * 2)  # an output under autograd (the ODE likelihood's)


# ---------------------------------------------------------------- the range a denoiser declares


@pytest.mark.parametrize("declared,pattern", [
    (dict(sigma_min=math.nan), r"declares sigma_min=nan and sigma_max=80\.0; its noise range must be finite"),
    (dict(sigma_max=math.inf), r"declares sigma_min=0\.002 and sigma_max=inf"),
    (dict(sigma_min=-0.1), r"declares sigma_min=-0\.1 and sigma_max=80\.0"),
    (dict(sigma_min=10.0, sigma_max=1.0), r"declares sigma_min=10\.0 and sigma_max=1\.0"),
    (dict(sigma_data=0.0), r"declares sigma_data=0\.0; it must be finite and > 0, or None"),
    (dict(sigma_data=math.nan), r"declares sigma_data=nan"),
], ids=["sigma_min NaN", "sigma_max inf", "sigma_min < 0", "sigma_min > sigma_max", "sigma_data 0", "sigma_data NaN"])
def test_a_declared_range_must_be_finite_and_ordered(gmm, declared, pattern):
    D = type("Declared", (), {**declared, "__call__": lambda self, x, sigma: gmm(x, sigma)})()
    with pytest.raises(ValueError, match=r"the denoiser \(Declared\) " + pattern):
        describe(D)
    with pytest.raises(ValueError, match=pattern):
        sample(D, start(), method="heun", nfe=5)


# ---------------------------------------------------------------- sample()'s own arguments

BAD_ARGUMENTS = [
    ("sigma_min < 0", dict(sigma_min=-1.0), r"sigma_min must be a finite noise level > 0, got -1\.0"),
    ("sigma_min = 0", dict(sigma_min=0.0), r"sigma_min must be a finite noise level > 0, got 0\.0"),
    ("sigma_min NaN", dict(sigma_min=math.nan), r"sigma_min must be a finite noise level > 0, got nan"),
    ("sigma_min inf", dict(sigma_min=math.inf, sigma_max=None), r"sigma_min must be a finite noise level > 0, got inf"),
    ("sigma_max inf", dict(sigma_max=math.inf), r"sigma_max must be a finite noise level > 0, got inf"),
    ("sigma_max True", dict(sigma_max=True), r"sigma_max must be a finite noise level > 0, got True"),
    ("sigma_min = sigma_max", dict(sigma_min=80.0), r"needs 0 < sigma_min < sigma_max, got sigma_min=80\.0 and "
                                                     r"sigma_max=80\.0"),
    ("sigma_min > the denoiser's sigma_max", dict(sigma_min=100.0, sigma_max=None),
     r"needs 0 < sigma_min < sigma_max, got sigma_min=100\.0 and sigma_max=80\.0 \(a value not passed is the "
     r"denoiser's\)"),
    ("nfe True", dict(nfe=True), r"nfe must be >= 1 and an integer \(not a bool\), got True"),
    ("nfe 10.0", dict(nfe=10.0), r"nfe must be >= 1 and an integer \(not a bool\), got 10\.0"),
    ("nfe 0", dict(nfe=0), r"nfe must be >= 1 and an integer \(not a bool\), got 0"),
    ("grid increasing", dict(grid=torch.tensor([1.0, 2.0, 0.0]), sigma_min=None, sigma_max=None),
     r"grid must be strictly decreasing"),
    ("grid with NaN", dict(grid=torch.tensor([80.0, math.nan, 0.0]), sigma_min=None, sigma_max=None),
     r"grid must be finite and non-negative"),
    ("grid of one level", dict(grid=torch.tensor([80.0]), sigma_min=None, sigma_max=None),
     r"grid must be a 1-D tensor of at least 2 levels"),
    ("grid and sigma_min", dict(grid=torch.tensor([80.0, 0.0])),
     r"give either a grid or sigma_min, sigma_max and tail"),
    ("tail NaN", dict(tail=math.nan), r"tail must be a finite noise level >= 0, got nan"),
    ("tail inf", dict(tail=math.inf), r"tail must be a finite noise level >= 0, got inf"),
    ("tail < 0", dict(tail=-1.0), r"tail must be a finite noise level >= 0, got -1\.0"),
    ("x NaN", dict(x=torch.tensor([[0.0, math.nan]])), r"x has NaN or infinite entries \(1 of 2\)"),
    ("x inf", dict(x=torch.full((3, 2), math.inf)), r"x has NaN or infinite entries \(6 of 6\)"),
    ("x without rows", dict(x=torch.zeros(0, 2)), r"x must be a floating-point tensor .* with at least one row, got "
                                                    r"float32 tensor of shape \(0, 2\)"),
    ("x of ints", dict(x=torch.zeros(2, 2, dtype=torch.long)), r"x must be a floating-point tensor"),
    ("3 generators for 8 samples", dict(generator=[torch.Generator()] * 3), r"3 generators for a batch of 8 samples"),
    ("a seed as generator", dict(generator=42), r"generator must be a torch\.Generator or a sequence of them"),
    ("callback not callable", dict(callback=1), r"callback must be callable, got int"),
    ("nan policy", dict(nan="warn"), r"nan must be one of 'raise', 'allow', got 'warn'"),
]


@pytest.mark.parametrize("kw,pattern", [c[1:] for c in BAD_ARGUMENTS], ids=[c[0] for c in BAD_ARGUMENTS])
def test_bad_arguments_of_sample_are_refused_before_any_call(gmm, kw, pattern):
    calls = []

    def D(x, sigma):
        calls.append(sigma)
        return gmm(x, sigma)

    kw = {"sigma_min": 0.002, "sigma_max": 80.0, "method": "ddim", **kw}
    kw = {k: v for k, v in kw.items() if v is not None}
    with pytest.raises(ValueError, match=pattern):
        sample(D, kw.pop("x", start()), **kw)
    assert not calls


def test_a_declared_sigma_min_of_zero_is_a_valid_claim_but_sampling_needs_a_positive_one(gmm):
    D = type("Exact", (), {"sigma_min": 0.0, "__call__": lambda self, x, sigma: gmm(x, sigma)})()
    assert describe(D).sigma_min == 0.0
    with pytest.raises(ValueError, match="needs 0 < sigma_min < sigma_max, got sigma_min=0.0"):
        sample(D, start())
    assert torch.isfinite(sample(D, start(), sigma_min=0.002)).all()


def test_calibrate_grid_checks_its_arguments_and_outputs(gmm):
    x = start()
    with pytest.raises(ValueError, match="nfe must be >= 1"):
        calibrate_grid(gmm, x, method="dpmpp_2m", nfe=0, sigma_min=0.002, sigma_max=80.0)
    with pytest.raises(ValueError, match="needs 0 < sigma_min < sigma_max"):
        calibrate_grid(gmm, x, method="dpmpp_2m", nfe=5, sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match=r"x0_hat is not finite .* \(call 1 of calibrate_grid\)"):
        calibrate_grid(lambda x, s: gmm(x, s) * math.nan, x, method="dpmpp_2m", nfe=5, sigma_min=0.002,
                       sigma_max=80.0)


# ---------------------------------------------------------------- sampler options (OPTION_BOUNDS)

BAD_OPTIONS = [
    ("eta NaN", dict(eta=math.nan), r"eta must be a finite number >= 0 for sampler 'ddim', got nan"),
    ("eta < 0", dict(eta=-0.5), r"eta must be a finite number >= 0 for sampler 'ddim', got -0\.5"),
    ("eta inf", dict(eta=math.inf), r"eta must be a finite number >= 0 for sampler 'ddim', got inf"),
    ("eta as text", dict(eta="0.5"), r"eta must be a finite number >= 0 for sampler 'ddim', got '0\.5'"),
    ("LMS order 0", dict(method="lms", order=0), r"order must be an integer >= 1 for sampler 'lms', got 0"),
    ("UniPC order True", dict(method="unipc", order=True),
     r"order must be an integer >= 1 for sampler 'unipc', got True"),
    ("DPM-Solver order 2.0", dict(method="dpm_solver_2", order=2.0), r"order must be an integer >= 1 .* got 2\.0"),
    ("DPM-Solver r1 = 0", dict(method="dpm_solver_2", r1=0.0), r"r1 must be a finite number > 0 and <= 1 \(or None"),
    ("PC n_corrector -1", dict(method="pc", n_corrector=-1), r"n_corrector must be an integer >= 0 for sampler 'pc'"),
    ("ALD n_steps 0", dict(method="ald", n_steps=0), r"n_steps must be an integer >= 1 for sampler 'ald', got 0"),
    ("ALD eps NaN", dict(method="ald", eps=math.nan), r"eps must be a finite number > 0 \(or None"),
    ("dopri5 rtol 0", dict(method="dopri5", rtol=0.0), r"rtol must be a finite number > 0 for sampler 'dopri5'"),
    ("EDM s_churn NaN", dict(method="edm_stochastic", s_churn=math.nan), r"s_churn must be a finite number >= 0"),
    ("UniPC corrector 1", dict(method="unipc", corrector=1), r"corrector must be True or False for sampler 'unipc'"),
]


@pytest.mark.parametrize("kw,pattern", [c[1:] for c in BAD_OPTIONS], ids=[c[0] for c in BAD_OPTIONS])
def test_bad_sampler_options_are_refused_before_any_call(gmm, kw, pattern):
    calls = []

    def D(x, sigma):
        calls.append(sigma)
        return gmm(x, sigma)

    with pytest.raises(ValueError, match=pattern):
        sample(D, start(), **{"method": "ddim", **kw})
    assert not calls


@pytest.mark.parametrize("name", NAMES)
def test_every_numeric_option_refuses_nan(gmm, name):
    for option in SAMPLERS[name].options:
        if option in OPTION_BOUNDS:
            with pytest.raises(ValueError, match=rf"^{option} must be .* for sampler '{name}', got nan$"):
                run(gmm, name, **{option: math.nan})


def test_every_option_has_bounds_and_its_default_is_within_them():
    """A new sampler's option is declared (OPTION_BOUNDS, FLAGS) or knowingly left to its sampler (NOT_NUMERIC)."""
    for name in NAMES:
        params = inspect.signature(SAMPLERS[name].fn).parameters
        for option in SAMPLERS[name].options:
            assert option in OPTION_BOUNDS or option in FLAGS or option in NOT_NUMERIC, (name, option)
            default = params[option].default
            if option in OPTION_BOUNDS:
                assert OPTION_BOUNDS[option].admits(default), (name, option, default)
            if option in FLAGS:
                assert isinstance(default, bool), (name, option, default)


def test_values_in_range_still_pass(gmm):
    assert torch.isfinite(run(gmm, "edm_stochastic", s_tmax=math.inf, s_churn=0)).all()  # inf: churn everywhere
    assert torch.isfinite(run(gmm, "pc", n_corrector=0)).all()  # the predictor alone
    assert torch.isfinite(run(gmm, "dpm_solver_3", r1=0.25, r2=None)).all()
    assert torch.isfinite(run(gmm, "ddim", eta=0)).all()  # an int where a float is expected
    assert torch.isfinite(sample(gmm, start(), grid=grids.karras(5, 0.002, 80.0))).all()


# ---------------------------------------------------------------- generate()


def tiny_model(nan_weights: bool = False):
    torch.manual_seed(0)
    model, _ = build_model(ModelConfig(backbone="mlp", params={"dim": 2, "hidden": 8, "depth": 1, "emb_dim": 8}),
                           ProcessConfig(name="vp"))
    if nan_weights:
        with torch.no_grad():
            next(model.parameters()).fill_(math.nan)
    return model


@pytest.mark.parametrize("kw,pattern", [
    (dict(eta=math.nan), r"eta must be a finite number >= 0 for sampler 'ddim', got nan"),
    (dict(sampler="euler_ancestral", s_noise=math.inf), r"s_noise must be a finite number >= 0"),
    (dict(sampler="lms", order=0), r"order must be an integer >= 1 for sampler 'lms'"),
    (dict(steps=0), r"steps must be >= 1 and an integer \(not a bool\), got 0"),
    (dict(steps=True), r"steps must be >= 1 and an integer \(not a bool\), got True"),
    (dict(batch_size=True), r"batch_size must be >= 1 and an integer \(not a bool\), got True"),
    (dict(batch_size=0), r"batch_size must be >= 1"),
    (dict(seed=2**64 - 3), r"seed must be an integer in \[-2\*\*63, 2\*\*64 - num\], got 18446744073709551613"),
    (dict(seed=1.5), r"seed must be an integer in \[-2\*\*63, 2\*\*64 - num\], got 1\.5"),
    (dict(seed=True), r"seed must be an integer .* got True"),
    (dict(nfe=0), r"nfe must be >= 1"),
    (dict(nan="skip"), r"nan must be one of 'raise', 'allow', got 'skip'"),
], ids=["eta NaN", "s_noise inf", "order 0", "steps 0", "steps True", "batch_size True", "batch_size 0",
        "seed 2**64 - 3 for 4 samples", "seed 1.5", "seed True", "nfe 0", "nan policy"])
def test_bad_arguments_of_generate_are_refused(kw, pattern):
    with pytest.raises(ValueError, match=pattern):
        generate(tiny_model(), (2,), 4, **kw)


def test_generate_takes_every_seed_torch_takes():
    for seed in (-2**63, -1, 2**64 - 4):  # the last: seeds up to 2**64 - 1 for 4 samples
        out, _ = generate(tiny_model(), (2,), 4, steps=2, seed=seed)
        assert torch.isfinite(out).all()


def test_generate_refuses_a_nan_model_and_restores_its_mode():
    model = tiny_model(nan_weights=True).train()
    with pytest.raises(ValueError, match=r"x0_hat is not finite .* at sigma=[\d.]+ \(call 1 of sampler 'ddim'\)"):
        generate(model, (2,), 4, steps=3)
    assert model.training
    out, calls = generate(model, (2,), 4, steps=3, nan="allow")
    assert out.shape == (4, 2) and torch.isnan(out).all() and calls == 3 and model.training
