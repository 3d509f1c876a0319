"""Guidance on flow-matching models against ground truth: the labelled Gaussian mixture's exact velocity field under
the linear path x_t = (1 - t) x0 + t eps, wrapped as a trained flow model is (ModelDenoiser, process flow,
prediction velocity), then guided; and a tiny class-conditional flow run trained and sampled with guidance."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from torchdiffusion.analytic_cond import LabeledGaussianMixture
from torchdiffusion.denoiser import CountingDenoiser
from torchdiffusion.guidance import classifier_free
from torchdiffusion.model_denoiser import ModelDenoiser
from torchdiffusion.processes import Flow
from torchdiffusion.sampling import sample

F64 = torch.float64


class ExactVelocity(nn.Module):
    """The backbone a perfect flow model would be: E[dx_t/dt | x_t, y] = (x_t - E[x0 | x_t, y]) / t, since
    x_t - x0 = t (eps - x0); E[x0 | x_t, y] is the mixture's denoiser at VE state x_t / (1 - t), sigma = t / (1 - t).
    Its time input is the flow default, c_noise = 1000 t."""

    def __init__(self, lgm: LabeledGaussianMixture):
        super().__init__()
        self.lgm = lgm

    def forward(self, xt, c_noise, class_labels=None):
        t = (c_noise.double() / 1000)[:, None]
        x0 = self.lgm.denoise(xt / (1 - t), (t / (1 - t))[:, 0], class_labels)
        return (xt - x0) / t


@pytest.fixture
def lgm():
    means = torch.tensor([[-2.0, 0.5], [1.5, 1.5], [0.5, -2.0], [2.0, -0.5], [-1.0, -1.5]], dtype=F64)
    var = torch.tensor([[0.3, 0.1], [0.05, 0.2], [0.15, 0.15], [0.2, 0.1], [0.1, 0.25]], dtype=F64)
    return LabeledGaussianMixture(torch.tensor([0.25, 0.2, 0.15, 0.2, 0.2]), means, var,
                                  labels=torch.tensor([0, 0, 0, 1, 1]))


@pytest.fixture
def flow_model(lgm):
    return ModelDenoiser(ExactVelocity(lgm), Flow(), "velocity")


def velocity(model: ModelDenoiser, d: torch.Tensor, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """The flow velocity that a denoiser output d means at VE state x, level sigma: (x_t - d) / t."""
    t = model.process.t_of_sigma_ve(torch.tensor(sigma, dtype=F64))
    return ((1 - t) * x - d) / t


@pytest.mark.parametrize("sigma", [0.01, 0.5, 3.0, 40.0])
@pytest.mark.parametrize("w", [0.0, 1.0, 2.5])
def test_cfg_of_an_exact_flow_model_is_the_guided_mixture_denoiser_and_guided_velocity(lgm, flow_model, sigma, w):
    """CFG through a flow-process model: D_w = D_u + w (D_c - D_u) with the mixture's exact D_c, D_u, and, since the
    velocity is affine in x0_hat, the same guidance applied to the velocities: v_w = v_u + w (v_c - v_u)."""
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(1), dtype=F64) * (1 + sigma)
    y = torch.tensor([0, 1] * 8)
    null = torch.tensor([lgm.null_label])
    assert torch.allclose(flow_model(x, sigma, class_labels=y), lgm.denoise(x, sigma, y), atol=1e-10)
    guided = classifier_free(flow_model, {"class_labels": y}, {"class_labels": null}, w)(x, sigma)
    d_c, d_u = lgm.denoise(x, sigma, y), lgm.denoise(x, sigma, None)
    assert torch.allclose(guided, d_u + w * (d_c - d_u), atol=1e-10)
    v_c, v_u = velocity(flow_model, d_c, x, sigma), velocity(flow_model, d_u, x, sigma)
    assert torch.allclose(velocity(flow_model, guided, x, sigma), v_u + w * (v_c - v_u), atol=1e-8)


def test_ode_sampling_of_a_flow_model_with_cfg_at_w1_draws_each_class_law(lgm, flow_model):
    """Heun over the flow model's whole range through CFG (w = 1, both classes in one batch): component frequencies
    of each class match p(x0 | y) (chi-square), and every step makes one batched call for both branches."""
    n = 2000
    y = torch.cat([torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)])
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2 * n, 2, generator=gen, dtype=F64) * flow_model.sigma_max
    inner = CountingDenoiser(flow_model)
    guided = CountingDenoiser(classifier_free(inner, {"class_labels": y},
                                              {"class_labels": torch.tensor([lgm.null_label])}, 1.0))
    out = sample(guided, x, method="heun", nfe=79, sigma_min=flow_model.sigma_min, sigma_max=flow_model.sigma_max)
    assert guided.calls == inner.calls <= 79
    for c, chi2_bound in ((0, 13.8), (1, 10.8)):  # 3 and 2 components: 2 and 1 degrees of freedom, p = 0.001
        target = lgm.conditional(c)
        got = torch.bincount(target.responsibilities(out[y == c], 0.0).argmax(1), minlength=len(target.weights))
        expected = n * target.weights
        chi2 = ((got.double() - expected) ** 2 / expected).sum().item()
        assert chi2 < chi2_bound, (c, got, expected)
    # and the guidance changes what is drawn: w = 4 pulls class 1 away from class 0's components
    w4 = sample(classifier_free(flow_model, {"class_labels": y}, {"class_labels": torch.tensor([lgm.null_label])},
                                4.0), x, method="heun", nfe=79, sigma_min=flow_model.sigma_min,
                sigma_max=flow_model.sigma_max)
    assert (w4 - out).abs().max() > 0.1


FLOW_COND = {
    "data": {"name": "digits", "limit": 200},
    "process": {"name": "flow"},
    "model": {"backbone": "unet", "prediction": "velocity",
              "params": {"in_channels": 1, "image_size": 8, "base_channels": 8, "channel_mult": [1, 2],
                         "num_res_blocks": 1, "attn_resolutions": [], "num_heads": 2, "num_classes": 10}},
    "loss": {"coupling": "ot", "t_sampling": "logit_normal"},
    "train": {"batch_size": 16, "lr": 1e-3, "warmup_steps": 1, "sample_every": 0, "cond_drop": 0.25},
    "sample": {"sampler": "heun", "steps": 3, "num": 4},
}


def test_a_class_conditional_flow_run_samples_with_classifier_free_guidance(tmp_path, capsys):
    """train (flow, OT coupling, label dropout) -> sample --class-label --guidance-scale: w = 1 is the conditional
    model exactly (the same samples as no guidance), w = 3 differs, every pixel finite, the budget kept."""
    from torchdiffusion.cli import main

    (tmp_path / "c.yaml").write_text(yaml.safe_dump(FLOW_COND))
    assert main(["train", str(tmp_path / "c.yaml"), "--max-steps", "3", "--out", str(tmp_path / "run"),
                 "--no-progress"]) == 0
    arrays = {}
    for name, flags in {"plain": [], "w1": ["--guidance-scale", "1"], "w3": ["--guidance-scale", "3"],
                        "w3_rescaled": ["--guidance-scale", "3", "--guidance-rescale", "0.7"],
                        "w3_interval": ["--guidance-scale", "3", "--guidance-interval", "0.5,10"]}.items():
        capsys.readouterr()
        npz = tmp_path / f"{name}.npz"
        assert main(["sample", str(tmp_path / "run"), "--num", "4", "--sampler", "euler", "--steps", "4",
                     "--class-label", "3", "--seed", "0", "--npz", str(npz), *flags]) == 0
        assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["nfe"] == 4
        arrays[name] = np.load(npz)["arr_0"]
        assert arrays[name].shape == (4, 8, 8, 1)
    assert np.array_equal(arrays["plain"], arrays["w1"])
    assert not np.array_equal(arrays["w1"], arrays["w3"])  # (after 3 steps the rescaled ones differ little)
