"""Sample-quality metrics against closed forms: FID between Gaussians, the unbiasedness of KID and MMD, improved
precision/recall, Inception Score extremes, sliced Wasserstein in 1-D and under shifts."""

import math

import pytest
import torch

from torchdiffusion.analytic import GaussianMixture
from torchdiffusion.metrics import (fid_from_features, frechet_distance, inception_score, kid,
                                    log_likelihood_of_samples, mmd_gaussian, precision_recall, sliced_wasserstein,
                                    wasserstein_1d)


def random_spd(d, gen):
    a = torch.randn(d, d, generator=gen, dtype=torch.float64)
    return a @ a.T + 0.1 * torch.eye(d, dtype=torch.float64)


# --- FID ----------------------------------------------------------------------------------------------------------

def test_fid_of_a_set_with_itself_is_zero(gen):
    f = torch.randn(500, 8, generator=gen, dtype=torch.float64) @ random_spd(8, gen)
    assert fid_from_features(f, f) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_matches_the_closed_form_between_gaussians(gen):
    # commuting (diagonal) covariances: ||mu1 - mu2||^2 + sum (sqrt a_i - sqrt b_i)^2
    mu1, mu2 = torch.randn(5, generator=gen, dtype=torch.float64), torch.randn(5, generator=gen, dtype=torch.float64)
    a, b = torch.rand(5, generator=gen, dtype=torch.float64) + 0.1, torch.rand(5, generator=gen, dtype=torch.float64)
    closed = ((mu1 - mu2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum()
    assert frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b)) == pytest.approx(closed.item(), rel=1e-10)
    # general: Tr (C1 C2)^(1/2) = sum sqrt(eig(C1 C2)), C1 C2 being similar to the PSD C1^(1/2) C2 C1^(1/2)
    c1, c2 = random_spd(5, gen), random_spd(5, gen)
    tr_sqrt = torch.linalg.eigvals(c1 @ c2).real.clamp(min=0).sqrt().sum()
    closed = ((mu1 - mu2) ** 2).sum() + torch.trace(c1) + torch.trace(c2) - 2 * tr_sqrt
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(closed.item(), rel=1e-8)


# --- KID and MMD: unbiased estimates of population values ----------------------------------------------------------

def cubic_kernel_mmd2_1d(a: float, b: float) -> float:
    """Population MMD^2 between N(a, 1) and N(b, 1) for k(x, y) = (x y + 1)^3 = sum_j C(3, j) x^j y^j:
    sum_j C(3, j) (m_j(P) - m_j(Q))^2 with moments m_1 = a, m_2 = a^2 + 1, m_3 = a^3 + 3a."""
    m = lambda t: (t, t * t + 1, t**3 + 3 * t)
    return sum(c * (p - q) ** 2 for c, p, q in zip((3, 3, 1), m(a), m(b)))


@pytest.mark.parametrize("shift", [0.0, 0.4])
def test_kid_is_unbiased_for_the_population_mmd(gen, shift):
    vals = []
    for _ in range(400):
        x = torch.randn(40, 1, generator=gen, dtype=torch.float64)
        y = torch.randn(40, 1, generator=gen, dtype=torch.float64) + shift
        vals.append(kid(x, y, subsets=1, subset_size=40, generator=gen)["mean"])
    v = torch.tensor(vals)
    se = v.std().item() / math.sqrt(len(v))
    assert abs(v.mean().item() - cubic_kernel_mmd2_1d(0.0, shift)) < 4 * se
    if shift:
        assert v.mean().item() > 10 * se


def test_kid_averages_over_subsets_and_reports_its_standard_error(gen):
    x = torch.randn(300, 16, generator=gen, dtype=torch.float64)
    y = torch.randn(300, 16, generator=gen, dtype=torch.float64) + 0.5
    out = kid(x, y, subsets=20, subset_size=100, generator=gen)
    assert out["se"] == pytest.approx(out["std"] / math.sqrt(20))
    assert out["mean"] > 5 * out["se"]


@pytest.mark.parametrize("shift", [0.0, 0.7])
def test_gaussian_mmd_is_unbiased_for_the_closed_form(gen, shift):
    # E k(x, y) for x ~ N(a, s^2 I), y ~ N(b, s^2 I), k = exp(-|x - y|^2 / 2h^2):
    # (h^2 / (h^2 + 2 s^2))^(d/2) exp(-|a - b|^2 / (2 (h^2 + 2 s^2)))
    d, s, h, n = 2, 1.0, 1.5, 30
    c = (h * h / (h * h + 2 * s * s)) ** (d / 2)
    closed = 2 * c * (1 - math.exp(-(shift**2) / (2 * (h * h + 2 * s * s))))
    vals = torch.tensor([mmd_gaussian(torch.randn(n, d, generator=gen, dtype=torch.float64),
                                      torch.randn(n, d, generator=gen, dtype=torch.float64) + shift / math.sqrt(d),
                                      bandwidths=h) for _ in range(500)])
    se = vals.std().item() / math.sqrt(len(vals))
    assert abs(vals.mean().item() - closed) < 4 * se, (vals.mean().item(), closed, se)


# --- improved precision and recall ----------------------------------------------------------------------------------

def test_precision_and_recall_are_one_on_identical_sets_and_zero_on_disjoint_ones(gen):
    x = torch.randn(200, 4, generator=gen, dtype=torch.float64)
    assert precision_recall(x, x.clone()) == {"precision": 1.0, "recall": 1.0}
    assert precision_recall(x, x + 100.0) == {"precision": 0.0, "recall": 0.0}


def test_dropping_a_mode_costs_recall_not_precision(gen):
    centers = torch.tensor([[-10.0, 0.0], [10.0, 0.0]], dtype=torch.float64)
    real = centers.repeat(300, 1) + torch.randn(600, 2, generator=gen, dtype=torch.float64)
    fake = centers[0] + torch.randn(600, 2, generator=gen, dtype=torch.float64)  # only the first mode
    out = precision_recall(real, fake, k=3, chunk=64)
    assert out["precision"] > 0.95 and 0.4 < out["recall"] < 0.51
    assert out == precision_recall(real, fake, k=3, chunk=10_000)  # chunking changes nothing


# --- Inception Score -----------------------------------------------------------------------------------------------

def test_inception_score_is_the_class_count_for_confident_uniform_predictions_and_one_for_constant_ones():
    C = 10
    confident = 60.0 * torch.eye(C).repeat(20, 1)  # every class equally often, each prediction certain
    out = inception_score(confident, splits=4)
    assert out["mean"] == pytest.approx(C, rel=1e-9) and out["std"] == pytest.approx(0.0, abs=1e-9)
    constant = torch.randn(1, C).repeat(200, 1)
    assert inception_score(constant, splits=5)["mean"] == pytest.approx(1.0, abs=1e-12)


# --- sliced Wasserstein ---------------------------------------------------------------------------------------------

def w1_by_cdfs(a, b):
    """W_1 on the line as int |F_a - F_b| dx over the merged sample points."""
    pts = torch.cat([a, b]).sort().values
    Fa = torch.searchsorted(a.sort().values, pts[:-1], right=True).double() / len(a)
    Fb = torch.searchsorted(b.sort().values, pts[:-1], right=True).double() / len(b)
    return ((Fa - Fb).abs() * pts.diff()).sum().item()


@pytest.mark.parametrize("m", [50, 73])
def test_sliced_wasserstein_in_one_dimension_is_the_exact_wasserstein(gen, m):
    a = torch.randn(50, 1, generator=gen, dtype=torch.float64)
    b = 1.5 * torch.rand(m, 1, generator=gen, dtype=torch.float64)
    assert sliced_wasserstein(a, b, p=1, projections=3, generator=gen) == pytest.approx(w1_by_cdfs(a[:, 0], b[:, 0]),
                                                                                         rel=1e-10)
    assert wasserstein_1d(a[:, 0], b[:, 0], p=1).item() == pytest.approx(w1_by_cdfs(a[:, 0], b[:, 0]), rel=1e-10)


def test_sliced_wasserstein_of_a_shift_is_its_length_over_root_d(gen):
    # W_2(theta.x, theta.x + theta.s) = |theta.s| and E (theta.s)^2 = |s|^2 / d for theta uniform on the sphere
    d = 3
    x = torch.randn(100, d, generator=gen, dtype=torch.float64)
    s = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    sw = sliced_wasserstein(x, x + s, projections=20_000, generator=torch.Generator().manual_seed(1))
    assert sw == pytest.approx(s.norm().item() / math.sqrt(d), rel=0.02)
    twice = sliced_wasserstein(x, x + 2 * s, projections=20_000, generator=torch.Generator().manual_seed(1))
    assert twice == pytest.approx(2 * sw, rel=1e-9)


# --- log-likelihood under a known density ---------------------------------------------------------------------------

def test_mean_log_likelihood_of_the_densitys_own_samples_is_minus_its_entropy(gen):
    v = torch.tensor([0.5, 2.0], dtype=torch.float64)
    g = GaussianMixture(torch.ones(1), torch.tensor([[1.0, -1.0]], dtype=torch.float64), v[None])
    x, _ = g.sample(20_000, generator=gen)
    mean, se = log_likelihood_of_samples(x, g.log_prob)
    assert abs(mean + 0.5 * torch.log(2 * math.pi * math.e * v).sum().item()) < 4 * se
