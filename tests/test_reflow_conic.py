"""`distill --conic ZETA`: each drawn reflow pair's noise is turned towards fresh noise by the share ZETA of their
angle (conic reflow's slerp, Kim et al. 2025), afresh at every draw, with the pair's sample as the target; an option
a resumed run must repeat."""

from __future__ import annotations

import math

import pytest
import torch

from torchdiffusion.cli import main
from torchdiffusion.model_denoiser import ModelDenoiser
from torchdiffusion.nn.mlp import MLP, MLPConfig
from torchdiffusion.processes import Flow

D = 784  # a Fashion-MNIST image's dimension


def trained_noises(monkeypatch, conic: float, draws: int = 2) -> tuple[torch.Tensor, list[torch.Tensor], list]:
    """The pair noises z (N, 784) and, for `draws` losses of a reflow distiller with this conic, the noise each loss
    trained on (B, 784) and the pair index of each row, read off diffusion_loss's eps and x1."""
    from torchdiffusion.distill import reflow

    seen = []
    real = reflow.diffusion_loss
    monkeypatch.setattr(reflow, "diffusion_loss", lambda m, x1, **kw: seen.append((x1, kw["eps"])) or real(m, x1, **kw))
    student = ModelDenoiser(MLP(MLPConfig(dim=D, hidden=16, depth=1)), Flow(), "velocity")
    z = torch.randn(5, D, generator=torch.Generator().manual_seed(1))
    x1 = torch.arange(5.0)[:, None].expand(5, D).clone()  # pair i's sample is the constant row i
    distiller = reflow.ReflowDistiller((z, x1), student, conic=conic)
    g = torch.Generator().manual_seed(0)
    for _ in range(draws):
        distiller.loss(torch.zeros(64, D), g)
    return z, [eps for _, eps in seen], [x[:, 0].long() for x, _ in seen]


def angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.arccos(torch.nn.functional.cosine_similarity(a, b, dim=1).clamp(-1, 1))


def test_conic_turns_each_drawn_noise_by_its_share_of_a_right_angle_and_afresh_each_draw(monkeypatch):
    z, noises, idx = trained_noises(monkeypatch, conic=0.2)
    for eps, i in zip(noises, idx):
        # fresh N(0, I) noise in 784 dimensions is all but orthogonal to z: the turn is 0.2 * pi / 2
        assert torch.allclose(angle(eps, z[i]), torch.full((len(i),), 0.2 * math.pi / 2), atol=0.06)
        assert torch.allclose(eps.norm(dim=1) / D ** 0.5, torch.ones(len(i)), atol=0.12)  # still N(0, I)'s norm
    first, second = noises[0][idx[0] == 0], noises[1][idx[1] == 0]  # pair 0, drawn in both batches
    assert len(first) and len(second) and angle(first[:1], second[:1]).item() > 0.1  # a new direction each draw


def test_without_conic_the_pairs_own_noise_is_trained(monkeypatch):
    z, noises, idx = trained_noises(monkeypatch, conic=0.0, draws=1)
    assert torch.equal(noises[0], z[idx[0]])


def test_conic_is_kept_for_resume_and_refused_outside_zero_to_one(tiny_run, tmp_path, capsys):
    out = tmp_path / "reflow"
    base = ["distill", str(tiny_run), "--method", "reflow", "--out", str(out), "--pairs", "8", "--pair-nfe", "3",
            "--batch-size", "4", "--no-progress"]
    assert main(base + ["--max-steps", "2", "--conic", "0.25"]) == 0
    capsys.readouterr()
    assert main(base + ["--max-steps", "3"]) == 2  # resumed without it
    assert "conic: saved 0.25 vs now 0.0" in capsys.readouterr().err
    for bad in ("1", "-0.1", "nan"):
        with pytest.raises(SystemExit) as e:
            main(base + ["--conic", bad])
        assert e.value.code == 2
