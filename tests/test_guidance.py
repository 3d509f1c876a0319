"""Guidance wrappers against ground truth: exact conditional and tilted denoisers of Gaussian mixtures.

A labelled Gaussian mixture gives E[x0 | x, y], E[x0 | x] and log p(y | x, sigma) in closed form at every sigma, so
guidance identities (w = 1 is conditioning, classifier guidance with the exact classifier is conditioning, CFG's
score is the tilted score) hold to float64 round-off, and samplers with guidance can be checked against known laws.
"""

import math

import pytest
import torch

from torchdiffusion.analytic import GaussianMixture
from torchdiffusion.analytic_cond import LabeledGaussianMixture, TiltedGaussian
from torchdiffusion.denoiser import CountingDenoiser
from torchdiffusion.guidance import (classifier_free, classifier_guidance, classifier_log_prob, composable,
                                     dynamic_threshold, limited_interval, negative_conditioning, process_classifier,
                                     rescale_std, static_threshold, thresholded)
from torchdiffusion.processes import VPLinear
from torchdiffusion.sampling import METHODS, grids, sample

F64 = torch.float64
SIGMAS = [0.01, 0.3, 1.0, 4.0, 50.0]


@pytest.fixture
def lgm():
    """Three classes with 3, 2 and 1 components; classes overlap, so conditioning changes the law."""
    means = torch.tensor([[-2.0, 0.5], [1.5, 1.5], [0.5, -2.0], [2.0, -0.5], [-1.0, -1.5], [0.0, 2.5]], dtype=F64)
    var = torch.tensor([[0.3, 0.1], [0.05, 0.2], [0.15, 0.15], [0.2, 0.1], [0.1, 0.25], [0.2, 0.2]], dtype=F64)
    weights = torch.tensor([0.2, 0.15, 0.15, 0.2, 0.15, 0.15])
    return LabeledGaussianMixture(weights, means, var, labels=torch.tensor([0, 0, 0, 1, 1, 2]))


def points(n=12, seed=0, scale=2.5):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=F64) * scale


def labels(n, seed=0, classes=3):
    return torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(seed))


def cfg_of(model, y, w, null, **kw):
    return classifier_free(model, {"class_labels": y}, {"class_labels": torch.tensor([null])}, w, **kw)


def grad(f, x):
    """grad_x sum f(x), by autograd in float64."""
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x).sum(), x)
    return g


# ---------------------------------------------------------------- classifier-free guidance and its relatives


@pytest.mark.parametrize("sigma", SIGMAS)
def test_cfg_at_w1_is_the_conditional_and_at_w0_the_unconditional_denoiser_exactly(lgm, sigma):
    x, y = points(), labels(12)
    assert torch.equal(cfg_of(lgm, y, 1.0, lgm.null_label)(x, sigma), lgm(x, sigma, class_labels=y))
    assert torch.equal(cfg_of(lgm, y, 0.0, lgm.null_label)(x, sigma), lgm(x, sigma))


@pytest.mark.parametrize("w", [0.5, 2.0, 4.0])
@pytest.mark.parametrize("sigma", SIGMAS)
def test_cfg_is_the_exact_denoiser_of_the_tilted_noisy_density(lgm, w, sigma):
    """D_w = x + sigma^2 grad [w log p_sigma(x | y) + (1 - w) log p_sigma(x)] (Tweedie on the tilted density)."""
    x, y = points(), labels(12, seed=1)
    tilted = lambda z: w * lgm.log_prob(z, sigma, y) + (1 - w) * lgm.log_prob(z, sigma)  # noqa: E731
    expected = x + sigma**2 * grad(tilted, x)
    assert torch.allclose(cfg_of(lgm, y, w, lgm.null_label)(x, sigma), expected, rtol=0, atol=1e-9 * (1 + sigma))


class GaussianPair:
    """Label 0: p(x0 | c) = N(mu_c, var_c); label 1 (null): p(x0) = N(mu_u, var_u), each an exact GaussianMixture."""

    def __init__(self, mu_c, var_c, mu_u, var_u):
        self.c = GaussianMixture(torch.ones(1), mu_c[None], var_c[None])
        self.u = GaussianMixture(torch.ones(1), mu_u[None], var_u[None])

    def __call__(self, x, sigma, class_labels):
        return torch.where((class_labels == 0)[:, None], self.c(x, sigma), self.u(x, sigma))


PAIR = dict(mu_c=torch.tensor([1.0, -0.5], dtype=F64), var_c=torch.tensor([0.25, 0.1], dtype=F64),
            mu_u=torch.tensor([0.0, 0.5], dtype=F64), var_u=torch.tensor([1.0, 0.6], dtype=F64))


@pytest.mark.parametrize("w", [0.0, 0.5, 1.0, 3.0, 6.0])
def test_cfg_of_gaussians_equals_the_closed_form_tilted_gaussian(w):
    """Scores of the tilted noisy density from its precision w P_c + (1 - w) P_u, independently of any denoiser."""
    pair, tilted = GaussianPair(**PAIR), TiltedGaussian(**PAIR, w=w)
    x = points(16, seed=2)
    y = torch.zeros(16, dtype=torch.long)
    for sigma in SIGMAS:
        got = classifier_free(pair, {"class_labels": y}, {"class_labels": torch.ones(1, dtype=torch.long)}, w)(x, sigma)
        assert torch.allclose(got, tilted(x, sigma), rtol=0, atol=1e-12 * (1 + sigma)), sigma


def test_negative_conditioning_replaces_the_unconditional_branch(lgm):
    x, y, neg = points(), labels(12, seed=3), labels(12, seed=4)
    for sigma in SIGMAS:
        d_c, d_n = lgm(x, sigma, class_labels=y), lgm(x, sigma, class_labels=neg)
        got = negative_conditioning(lgm, {"class_labels": y}, {"class_labels": neg}, 2.5)(x, sigma)
        assert torch.allclose(got, d_n + 2.5 * (d_c - d_n), rtol=0, atol=1e-13)


def test_composition_with_one_condition_is_cfg_and_with_several_adds_the_differences(lgm):
    x, null = points(), torch.tensor([lgm.null_label])
    y0, y1 = torch.zeros(12, dtype=torch.long), torch.ones(12, dtype=torch.long)
    for sigma in SIGMAS:
        one = composable(lgm, [{"class_labels": y0}], [3.0], {"class_labels": null})(x, sigma)
        assert torch.equal(one, cfg_of(lgm, y0, 3.0, lgm.null_label)(x, sigma))
        d_u, d_0, d_1 = lgm(x, sigma), lgm(x, sigma, class_labels=y0), lgm(x, sigma, class_labels=y1)
        two = composable(lgm, [{"class_labels": y0}, {"class_labels": y1}], [2.0, -0.5], {"class_labels": null})
        assert torch.allclose(two(x, sigma), d_u + 2.0 * (d_0 - d_u) - 0.5 * (d_1 - d_u), rtol=0, atol=1e-13)


def test_branches_run_as_one_batched_call_and_unstackable_kwargs_as_separate_calls(lgm):
    x, y = points(), labels(12, seed=5)
    inner = CountingDenoiser(lgm)
    batched = cfg_of(inner, y, 3.0, lgm.null_label)(x, 0.7)
    assert inner.calls == 1
    # a 0-d null label cannot be concatenated with per-sample labels: two calls, same result
    inner.calls = 0
    separate = classifier_free(inner, {"class_labels": y}, {"class_labels": torch.tensor(lgm.null_label)}, 3.0)(x, 0.7)
    assert inner.calls == 2
    assert torch.allclose(batched, separate, rtol=0, atol=1e-15)


# ---------------------------------------------------------------- CFG-rescale


def test_rescale_with_phi_zero_is_plain_cfg_and_with_phi_one_matches_the_conditional_std():
    # 8 dims, so no sample's std is a near-cancelling difference of two numbers
    g = torch.Generator().manual_seed(6)
    means, var = torch.randn(6, 8, generator=g, dtype=F64) * 2, 0.1 + torch.rand(6, 8, generator=g, dtype=F64) * 0.3
    lgm = LabeledGaussianMixture(torch.ones(6), means, var, labels=torch.tensor([0, 0, 0, 1, 1, 2]))
    x, y = torch.randn(12, 8, generator=g, dtype=F64) * 2.5, labels(12, seed=6)
    for sigma in SIGMAS:
        plain = cfg_of(lgm, y, 4.0, lgm.null_label)(x, sigma)
        assert torch.equal(cfg_of(lgm, y, 4.0, lgm.null_label, rescale=0.0)(x, sigma), plain)
        d_c, s2 = lgm(x, sigma, class_labels=y), sigma**2
        # the rescaled quantity per space, each proportional per sample to x0, eps and v
        spaces = {"x0": lambda d: d, "eps": lambda d: (x - d) / sigma,  # noqa: E731
                  "v": lambda d: ((x - d) / sigma - sigma * d) / math.sqrt(1 + s2)}  # alpha eps - sigma_t x0
        for space, u in spaces.items():
            out = cfg_of(lgm, y, 4.0, lgm.null_label, rescale=1.0, rescale_space=space)(x, sigma)
            assert torch.allclose(u(out).std(1, correction=0), u(d_c).std(1, correction=0), rtol=1e-9), (space, sigma)
            half = cfg_of(lgm, y, 4.0, lgm.null_label, rescale=0.5, rescale_space=space)(x, sigma)
            factor = 0.5 * u(d_c).std(1, correction=0) / u(plain).std(1, correction=0) + 0.5
            assert torch.allclose(u(half), factor[:, None] * u(plain), rtol=1e-9, atol=1e-12), (space, sigma)
            # at w = 1 the guided prediction is the conditional one: nothing to rescale
            same = cfg_of(lgm, y, 1.0, lgm.null_label, rescale=1.0, rescale_space=space)(x, sigma)
            assert torch.allclose(same, d_c, rtol=1e-12, atol=1e-12), (space, sigma)


def test_rescale_std_is_per_sample_over_all_non_batch_dims():
    g = torch.Generator().manual_seed(7)
    guided, ref = torch.randn(3, 2, 4, 4, generator=g, dtype=F64) * 3, torch.randn(3, 2, 4, 4, generator=g, dtype=F64)
    x, sigma = torch.randn(3, 2, 4, 4, generator=g, dtype=F64), torch.full((3,), 0.5, dtype=F64)
    out = rescale_std(guided, ref, x, sigma, 1.0, "x0")
    assert torch.allclose(out.std((1, 2, 3), correction=0), ref.std((1, 2, 3), correction=0), rtol=1e-12)
    assert torch.allclose(out / guided, (out / guided)[:, :1, :1, :1].expand_as(out))  # one factor per sample


# ---------------------------------------------------------------- guidance interval


def test_interval_guidance_makes_one_plain_call_outside_and_one_guided_call_inside(lgm):
    x, y = points(), labels(12, seed=8)
    inner = CountingDenoiser(lgm)
    guided = cfg_of(inner, y, 3.0, lgm.null_label, interval=(0.5, 5.0))
    for sigma in (0.1, 0.5, 5.0001, 40.0):  # outside (sigma_lo, sigma_hi]: w = 1, one call without the null branch
        inner.calls = 0
        assert torch.equal(guided(x, sigma), lgm(x, sigma, class_labels=y)) and inner.calls == 1, sigma
    for sigma in (0.5001, 1.0, 5.0):
        inner.calls = 0
        assert torch.equal(guided(x, sigma), cfg_of(lgm, y, 3.0, lgm.null_label)(x, sigma)) and inner.calls == 1
    # a batch straddling the interval's end takes each sample from its side
    sig = torch.tensor([0.2, 1.0] * 6, dtype=F64)
    inside = (sig > 0.5)[:, None]
    expected = torch.where(inside, cfg_of(lgm, y, 3.0, lgm.null_label)(x, sig), lgm(x, sig, class_labels=y))
    assert torch.equal(guided(x, sig), expected)
    # the generic form takes any pair of denoisers
    plain = limited_interval(cfg_of(lgm, y, 3.0, lgm.null_label), lgm, 0.5, 5.0)
    assert torch.equal(plain(x, 10.0), lgm(x, 10.0))


def test_a_negative_condition_keeps_the_guidance_interval(lgm):
    """GuidanceRecipe with a negative and an interval: D_neg + w (D_c - D_neg) inside, the conditional model outside."""
    from torchdiffusion.conditioning import GuidanceRecipe

    x, y, neg = points(), labels(12, seed=3), labels(12, seed=4)
    recipe = GuidanceRecipe(cond={"class_labels": y}, negative={"class_labels": neg}, scale=2.5, interval=(0.5, 5.0))
    guided = recipe.denoiser(lgm, slice(None))
    for sigma in (0.1, 40.0):
        assert torch.equal(guided(x, sigma), lgm(x, sigma, class_labels=y)), sigma
    d_c, d_n = lgm(x, 1.0, class_labels=y), lgm(x, 1.0, class_labels=neg)
    assert torch.allclose(guided(x, 1.0), d_n + 2.5 * (d_c - d_n), rtol=0, atol=1e-13)


def test_classifier_guidance_keeps_the_guidance_interval(lgm):
    """GuidanceRecipe with a classifier and an interval: D + s sigma^2 grad log p inside, the plain model outside."""
    from torchdiffusion.conditioning import GuidanceRecipe

    x, y = points(), labels(12, seed=5)
    null = {"class_labels": torch.full((12,), lgm.null_label)}
    recipe = GuidanceRecipe(cond=null, classifier=lgm.logits, classifier_labels=y, classifier_scale=2.0,
                            interval=(0.5, 5.0))
    guided = recipe.denoiser(lgm, slice(None))
    for sigma in (0.1, 40.0):
        assert torch.equal(guided(x, sigma), lgm(x, sigma, **null)), sigma
    inside = classifier_guidance(lgm, classifier_log_prob(lgm.logits, y), 2.0, cond=null)(x, 1.0)
    assert torch.equal(guided(x, 1.0), inside) and not torch.allclose(inside, lgm(x, 1.0, **null))


# ---------------------------------------------------------------- classifier guidance


@pytest.mark.parametrize("sigma", SIGMAS)
def test_classifier_guidance_with_the_exact_classifier_is_exact_conditioning(lgm, sigma):
    """D(x) + sigma^2 grad log p(y | x, sigma) = E[x0 | x, y]; the gradient is autograd of Bayes' rule on the noisy
    component densities, never of a denoiser, and several components per class make p(y | x) non-trivial."""
    x, y = points(), labels(12, seed=9)
    log_p = classifier_log_prob(lgm.logits, y)
    exact = lgm(x, sigma, class_labels=y)
    assert torch.allclose(classifier_guidance(lgm, log_p, 1.0)(x, sigma), exact, rtol=0, atol=1e-12 * (1 + sigma))
    assert torch.equal(classifier_guidance(lgm, log_p, 0.0)(x, sigma), lgm(x, sigma))
    # with exact models, classifier guidance at scale w is CFG at scale w
    cfg = cfg_of(lgm, y, 3.0, lgm.null_label)(x, sigma)
    assert torch.allclose(classifier_guidance(lgm, log_p, 3.0)(x, sigma), cfg, rtol=0, atol=1e-11 * (1 + sigma))


def test_process_classifier_sees_a_process_coordinate_classifier_in_ve_coordinates(lgm):
    """A classifier of (x_t, t) for VP-linear, adapted to (x, sigma), gives the same logits and the same guidance."""
    p = VPLinear()
    net = lambda xt, t: lgm.logits(xt / p.alpha(t)[:, None], p.sigma_ve(t))  # noqa: E731
    x, y = points(), labels(12, seed=10)
    adapted = process_classifier(net, p)
    for sigma in (0.05, 1.0, 20.0):
        s = torch.full((12,), sigma, dtype=F64)
        assert torch.allclose(adapted(x, s), lgm.logits(x, s), rtol=0, atol=1e-9)
        guided = classifier_guidance(lgm, classifier_log_prob(adapted, y), 1.0)(x, sigma)
        assert torch.allclose(guided, lgm(x, sigma, class_labels=y), rtol=0, atol=1e-8 * (1 + sigma))


# ---------------------------------------------------------------- thresholding


def test_dynamic_thresholding_leaves_in_range_predictions_and_maps_the_percentile_to_one():
    g = torch.Generator().manual_seed(11)
    inside = torch.rand(4, 3, 5, 5, generator=g, dtype=F64) * 2 - 1
    assert torch.equal(dynamic_threshold(inside), inside)
    assert torch.equal(static_threshold(inside), inside)
    # 5 values per sample and p = 0.75: the percentile is exactly the 4th smallest |x0|, with no interpolation
    x0 = torch.tensor([[0.5, -3.0, 2.0, 0.1, -6.0], [0.2, -0.4, 0.9, 0.3, 0.0]], dtype=F64)
    out = dynamic_threshold(x0, 0.75)
    assert torch.equal(out[0], torch.tensor([0.5 / 3, -1.0, 2.0 / 3, 0.1 / 3, -1.0], dtype=F64))
    assert torch.equal(out[1], x0[1])  # this sample's percentile is below 1: untouched
    assert out[0, 1] == -1.0  # the percentile element itself lands on the boundary
    assert torch.equal(dynamic_threshold(x0, 1.0)[0], x0[0] / 6)  # p = 1: the largest |x0| maps to 1
    assert torch.equal(static_threshold(x0), x0.clamp(-1, 1))


def test_thresholded_denoiser_stays_in_range(lgm):
    x, y = points(scale=20), labels(12, seed=12)
    for method in ("static", "dynamic"):
        out = thresholded(cfg_of(lgm, y, 8.0, lgm.null_label), method, percentile=0.9)(x, 2.0)
        assert out.abs().max() <= 1.0


# ---------------------------------------------------------------- argument checks


def test_guidance_arguments_are_checked(lgm):
    x, y = points(4), labels(4)
    with pytest.raises(ValueError, match="batch size 3"):
        classifier_free(lgm, {"class_labels": labels(3)}, {"class_labels": torch.tensor([3])}, 2.0)(x, 1.0)
    with pytest.raises(ValueError, match="batch size 2"):
        classifier_free(lgm, {"class_labels": y}, {"class_labels": torch.tensor([3, 3])}, 2.0)(x, 1.0)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="scale"):
            cfg_of(lgm, y, bad, 3)
        with pytest.raises(ValueError, match="scale"):
            classifier_guidance(lgm, classifier_log_prob(lgm.logits, y), bad)
    with pytest.raises(ValueError, match="finite"):
        composable(lgm, [{"class_labels": y}], [float("nan")], {"class_labels": torch.tensor([3])})
    with pytest.raises(ValueError, match="2 conditions but 1 scales"):
        composable(lgm, [{"class_labels": y}] * 2, [1.0], {"class_labels": torch.tensor([3])})
    for p in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="percentile"):
            dynamic_threshold(x, p)
        with pytest.raises(ValueError, match="percentile"):
            thresholded(lgm, "dynamic", p)
    for phi in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="phi"):
            cfg_of(lgm, y, 2.0, 3, rescale=phi)
    with pytest.raises(ValueError, match="space"):
        cfg_of(lgm, y, 2.0, 3, rescale=0.5, rescale_space="logits")
    with pytest.raises(ValueError, match="sigma_lo < sigma_hi"):
        cfg_of(lgm, y, 2.0, 3, interval=(5.0, 1.0))
    with pytest.raises(ValueError, match="shape"):
        classifier_guidance(lgm, lambda x, s: x.sum(), 1.0)(x, 1.0)


# ---------------------------------------------------------------- learned variance


class WithVariance:
    """The mixture plus a fake learned-variance head whose fraction reveals the label of the branch it came from."""

    def __init__(self, gm):
        self.gm = gm

    def __call__(self, x, sigma, class_labels=None):
        return self.gm(x, sigma, class_labels=class_labels)

    def forward_with_variance(self, x, sigma, class_labels=None):
        return self(x, sigma, class_labels), (class_labels.to(x) / 4)[:, None].expand_as(x)


def test_learned_variance_passes_through_guidance_from_the_conditional_branch(lgm):
    x, y = points(), labels(12, seed=13)
    model = WithVariance(lgm)
    cfg = cfg_of(model, y, 3.0, lgm.null_label)
    x0, frac = cfg.forward_with_variance(x, 1.0)
    assert torch.equal(x0, cfg(x, 1.0)) and torch.equal(frac, (y.to(x) / 4)[:, None].expand_as(x))
    out = sample(cfg, x * 30, method="ddpm", variance="learned", nfe=8, sigma_min=0.01, sigma_max=30.0,
                 generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out).all()


# ---------------------------------------------------------------- every wrapper with every sampler


def _wrappers(model, y, null):
    n = torch.tensor([null])
    c = {"class_labels": y}
    return {
        "cfg": lambda: classifier_free(model, c, {"class_labels": n}, 3.0),
        "negative": lambda: negative_conditioning(model, c, {"class_labels": (y + 1) % 3}, 2.0),
        "rescale": lambda: classifier_free(model, c, {"class_labels": n}, 5.0, rescale=0.7),
        "composable": lambda: composable(model, [c, {"class_labels": (y + 1) % 3}], [2.0, 1.0], {"class_labels": n}),
        "interval": lambda: classifier_free(model, c, {"class_labels": n}, 3.0, interval=(0.3, 5.0)),
        "classifier": lambda: classifier_guidance(model, classifier_log_prob(model.logits, y), 2.0),
        "thresholded": lambda: thresholded(classifier_free(model, c, {"class_labels": n}, 3.0), "dynamic", 0.9, 1.0),
    }


WRAPPERS = list(_wrappers(None, torch.zeros(1, dtype=torch.long), 0))


@pytest.mark.parametrize("wrapper", WRAPPERS)
@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_guidance_wrapper_runs_under_every_sampler_within_its_budget(lgm, method, wrapper):
    """One call of the guided denoiser is one NFE of the sampler and exactly one (batched) call of the model."""
    y = labels(4, seed=14)
    inner = CountingDenoiser(lgm)
    outer = CountingDenoiser(_wrappers(inner, y, lgm.null_label)[wrapper]())
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0)) * 80  # float32, as models run
    out = sample(outer, x, method=method, nfe=12, sigma_min=0.002, sigma_max=80.0,
                 generator=torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert 0 < outer.calls <= 12 and inner.calls == outer.calls


# ---------------------------------------------------------------- sampling with guidance


def assert_same_law(got, target, ref, chi2_bound):
    """Mean, covariance and mean log-density within 5 standard errors, mode weights by a chi-square test (p = 0.001)."""
    n = len(got)
    se = lambda z: z.std(0) / math.sqrt(n)  # noqa: E731  standard error of a mean over n samples
    assert ((got.mean(0) - target.mean()).abs() < 5 * se(ref)).all(), (got.mean(0), target.mean())
    centred = lambda z: (z - target.mean())[:, :, None] * (z - target.mean())[:, None, :]  # noqa: E731
    assert ((torch.cov(got.T, correction=0) - target.covariance()).abs() < 5 * se(centred(ref))).all()
    logp = target.log_prob(ref)
    assert abs(target.log_prob(got).mean() - logp.mean()) < 5 * se(logp)
    modes = lambda z: torch.bincount(target.responsibilities(z, 0.0).argmax(1),  # noqa: E731
                                     minlength=len(target.weights)).double()
    expected = n * modes(ref) / len(ref)
    chi2 = ((modes(got) - expected) ** 2 / expected).sum().item()
    assert chi2 < chi2_bound, chi2


def test_sampling_with_cfg_at_w1_reproduces_each_class_law(lgm):
    """SDE-DPM-Solver++(2M) through CFG (w = 1, two classes mixed in one batch) against draws from p(x0 | y)."""
    n = 3000
    y = torch.cat([torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)])
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2 * n, 2, generator=gen, dtype=F64) * 80
    inner = CountingDenoiser(lgm)
    outer = CountingDenoiser(cfg_of(inner, y, 1.0, lgm.null_label))
    out = sample(outer, x, method="dpmpp_2m_sde", nfe=100, sigma_min=0.002, sigma_max=80.0, generator=gen)
    assert outer.calls == inner.calls == 100
    for c, chi2_bound in ((0, 13.8), (1, 10.8)):  # 3 and 2 components: 2 and 1 degrees of freedom
        target = lgm.conditional(c)
        ref, _ = target.sample(100_000, generator=torch.Generator().manual_seed(123 + c))
        assert_same_law(out[y == c], target, ref, chi2_bound)


def test_tilted_gaussian_flow_map_at_w1_is_the_gaussian_flow_map():
    """At w = 1 the quadrature must give the known map x -> mu + sqrt((v + t^2) / (v + s^2)) (x - mu)."""
    tg = TiltedGaussian(**PAIR, w=1.0)
    phi, c = tg.flow_map(80.0, 0.002)
    v, mu = PAIR["var_c"], PAIR["mu_c"]
    expected_phi = torch.sqrt((v + 0.002**2) / (v + 80.0**2))
    assert torch.allclose(phi, expected_phi, rtol=1e-14) and torch.allclose(c, mu * (1 - expected_phi), atol=1e-12)


@pytest.mark.parametrize("w", [2.0, 4.0])
def test_cfg_sampling_of_gaussians_follows_the_flow_of_the_tilted_noisy_densities(w):
    """The PF-ODE under CFG is linear per dimension; RK4 through the wrapper matches its closed-form flow map, and the
    sampled law is not the tilted clean law: tilting does not commute with noising."""
    smax, smin = 80.0, 0.002
    pair, tg = GaussianPair(**PAIR), TiltedGaussian(**PAIR, w=w)
    y = torch.zeros(3, dtype=torch.long)
    cfg = classifier_free(pair, {"class_labels": y}, {"class_labels": torch.ones(1, dtype=torch.long)}, w)
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0], [-7.0, 30.0]], dtype=F64)
    phi, c = tg.flow_map(smax, smin)
    # grids end at sigma_min (no step to 0); RK4 converges to the closed form at order 4: error / 16 per doubling
    errs = [(METHODS["rk4"].fn(cfg, x, grids.exponential(n + 1, smin, smax)[:-1]) - (phi * x + c)).abs().max().item()
            for n in (128, 256)]
    assert errs[1] < 1e-7 and 12 < errs[0] / errs[1] < 20, errs
    # the ODE from the tilted noisy law at sigma_max = 1e4 ends with variance -> var_c^w var_u^(1 - w) (geometric),
    # while the tilted clean law has the harmonic 1 / (w / var_c + (1 - w) / var_u)
    big = 1e4
    ode_var = tg.transfer(0.0, big) ** 2 / tg.precision(big)[0]
    geometric = PAIR["var_c"] ** w * PAIR["var_u"] ** (1 - w)
    assert torch.allclose(ode_var, geometric, rtol=1e-6)
    assert ((ode_var / (1 / tg.precision(0.0)[0]) - 1).abs() > 0.3).all()
