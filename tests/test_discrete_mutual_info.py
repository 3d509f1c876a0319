"""D3PM's mutual-information schedule for non-absorbing kernels: the information between x0 and x_t, computed here
by a double loop over the joint table, falls linearly, (1 - t / T) H(x0), under a skewed data marginal; the
numerical solve reproduces the absorbing kernel's closed form 1 / (T - t + 1)."""

from __future__ import annotations

import math

import pytest
import torch

from torchdiffusion.discrete import DiscretizedGaussian, NearestNeighbour, Uniform
from torchdiffusion.discrete.mutual_info import entropy, mutual_info_betas_for
from torchdiffusion.discrete.schedules import mutual_info_betas

P0 = torch.tensor([0.55, 0.05, 0.1, 0.3], dtype=torch.float64)  # a skewed marginal, like a grey-level histogram
K, T = 4, 12


def loop_mutual_information(p0: torch.Tensor, Qbar: torch.Tensor) -> float:
    """sum_(i, j) p(i, j) log(p(i, j) / (p(i) p(j))) over the joint table, by loops."""
    k = len(p0)
    pt = [sum(float(p0[i] * Qbar[i, j]) for i in range(k)) for j in range(k)]
    total = 0.0
    for i in range(k):
        for j in range(k):
            pij = float(p0[i] * Qbar[i, j])
            if pij > 0:
                total += pij * math.log(pij / (float(p0[i]) * pt[j]))
    return total


@pytest.mark.parametrize("make", [lambda: Uniform(K, T, "mutual_info", marginal=P0),
                                  lambda: DiscretizedGaussian(K, T, "mutual_info", marginal=P0),
                                  lambda: NearestNeighbour(K, T, "mutual_info", marginal=P0)],
                         ids=["uniform", "gaussian", "nearest_neighbour"])
def test_the_information_falls_linearly_to_the_last_reachable_step(make):
    process = make()
    H = -sum(float(p) * math.log(float(p)) for p in P0)
    info = [loop_mutual_information(P0, process.marginal_matrix(t)) for t in range(T + 1)]
    assert info[0] == pytest.approx(H, abs=1e-12)
    reached = [t for t in range(1, T + 1) if float(process.betas[t]) < 1.0]  # beta_max = 1 where a step cannot
    assert len(reached) >= T - 2
    for t in reached:
        assert info[t] == pytest.approx((1 - t / T) * H, abs=1e-9), t
    assert all(b <= a + 1e-12 for a, b in zip(info, info[1:]))  # never rises (data processing)


def test_the_uniform_kernel_reaches_zero_information_at_t():
    process = Uniform(K, T, "mutual_info", marginal=P0)
    assert loop_mutual_information(P0, process.marginal_matrix(T)) == pytest.approx(0.0, abs=1e-9)
    assert float(process.prior_kl(torch.arange(K)[:, None]).max()) < 1e-8


def test_the_solver_reproduces_the_absorbing_closed_form():
    """Absorbing kernel over 3 data classes + [MASK]: Q(beta) = (1 - beta) I + beta 1 e_m^T; the solve under any
    marginal of the data classes gives 1 / (T - t + 1), the closed form of Austin et al. 2021, sec. 4.1."""
    k = 4
    mask = torch.zeros(k, dtype=torch.float64)
    mask[-1] = 1.0
    eye = torch.eye(k, dtype=torch.float64)
    p0 = torch.tensor([0.2, 0.5, 0.3, 0.0], dtype=torch.float64)
    betas = mutual_info_betas_for(lambda b: (1 - b) * eye + b * mask, p0, T)
    assert torch.allclose(betas, mutual_info_betas(T), atol=1e-9)


def test_a_uniform_marginal_is_the_default_and_bad_marginals_are_refused():
    a, b = Uniform(K, T, "mutual_info"), Uniform(K, T, "mutual_info", marginal=torch.full((K,), 0.25))
    assert torch.equal(a.betas, b.betas)
    assert entropy(torch.full((K,), 0.25)) == pytest.approx(math.log(K))
    with pytest.raises(ValueError, match="must be 4 non-negative numbers"):
        Uniform(K, T, "mutual_info", marginal=torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="only shapes the mutual_info schedule"):
        DiscretizedGaussian(K, T, "cosine", marginal=P0)


def test_a_run_config_carries_the_marginal_to_the_process():
    from torchdiffusion.build import build_discrete_process
    from torchdiffusion.config import ConfigError, load_config

    marginal = "process.marginal=[0.4,0.3,0.2,0.1]"
    small = ["process.vocab_size=4", "model.params.vocab_size=4", "process.T=8"]
    cfg = load_config("fashion_mnist_d3pm", small + ["process.schedule=mutual_info", marginal])
    process = build_discrete_process(cfg.process)
    p0 = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
    assert torch.equal(process.betas, DiscretizedGaussian(4, 8, "mutual_info", marginal=p0).betas)
    with pytest.raises(ConfigError, match="shapes the mutual_info schedule"):
        load_config("fashion_mnist_d3pm", small + [marginal])  # cosine schedule
    with pytest.raises(ConfigError, match="need process.vocab_size \\(4\\) non-negative numbers"):
        load_config("fashion_mnist_d3pm", small + ["process.schedule=mutual_info", "process.marginal=[1,-1,1,1]"])
