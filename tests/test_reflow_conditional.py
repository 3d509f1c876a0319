"""Reflow of a class-conditional teacher: pairs drawn per class carry their labels, and a conditional student trained
on them (labels dropped at cond_drop) maps noise in one step to its class. Ground truth: a labelled Gaussian mixture
with exact conditional denoisers, whose class-y samples lie near class y's component means."""

from __future__ import annotations

import pytest
import torch

from torchdiffusion.analytic_cond import LabeledGaussianMixture
from torchdiffusion.denoiser import Conditioned
from torchdiffusion.distill import ReflowDistiller, draw_reflow_pairs, fit, reflow_pairs
from torchdiffusion.model_denoiser import ModelDenoiser
from torchdiffusion.nn.mlp import MLP, MLPConfig
from torchdiffusion.processes import Flow
from torchdiffusion.sampling import sample

MEANS = torch.tensor([[-3.0, -2.0], [-3.0, 2.0], [3.0, 0.0], [0.0, 3.5], [0.5, -3.0]], dtype=torch.float64)
LABELS = torch.tensor([0, 0, 1, 2, 2])
STEPS = 400


def teacher() -> LabeledGaussianMixture:
    return LabeledGaussianMixture(torch.tensor([0.2, 0.2, 0.2, 0.2, 0.2]), MEANS, 0.05, LABELS)


def nearest_class(x: torch.Tensor) -> torch.Tensor:
    """The class of each point's nearest component mean."""
    return LABELS[torch.cdist(x.double(), MEANS).argmin(1)]


def test_pairs_of_a_conditional_teacher_carry_labels_drawn_by_the_class_frequencies():
    g = torch.Generator().manual_seed(0)
    probs = torch.tensor([0.6, 0.1, 0.3])
    z, x1, y = draw_reflow_pairs(teacher(), 3000, (2,), nfe=15, generator=g, class_probs=probs)
    assert z.shape == x1.shape == (3000, 2) and y.shape == (3000,) and y.dtype == torch.long
    freq = torch.bincount(y, minlength=3).double() / 3000
    assert torch.allclose(freq, probs.double(), atol=0.03), freq  # 3 sigma of a binomial at n = 3000 is < 0.027
    assert float((nearest_class(x1) == y).double().mean()) > 0.99  # each x1 is a sample of its own class


def test_a_conditional_reflow_student_lands_on_its_class_in_one_step():
    g = torch.Generator().manual_seed(1)
    z, x1, y = draw_reflow_pairs(teacher(), 2048, (2,), nfe=15, generator=g, class_probs=torch.ones(3))
    torch.manual_seed(0)
    student = ModelDenoiser(MLP(MLPConfig(dim=2, hidden=64, depth=3, num_classes=3)), Flow(), "velocity")
    d = ReflowDistiller((z, x1), student, labels=y, null_label=3, cond_drop=0.1, ema_decay=0.99)
    opt = torch.optim.Adam(student.parameters(), lr=3e-3)
    batch = lambda n, gen: (torch.zeros(n, 2), {})  # noqa: E731  (the pairs are the data)
    fit(d, batch, opt, total=STEPS, batch_size=128, generator=torch.Generator().manual_seed(2))
    labels = torch.arange(3).repeat_interleave(200)
    noise = torch.randn(600, 2, generator=torch.Generator().manual_seed(3)) * student.sigma_max
    with torch.no_grad():
        out = sample(Conditioned(d.ema, class_labels=labels), noise, method="ddim_fewstep", nfe=1)
    hit = (nearest_class(out) == labels).double()
    for c in range(3):  # each class's one-step samples land near that class's component means
        assert float(hit[labels == c].mean()) > 0.9, (c, float(hit[labels == c].mean()))
    dist = torch.cdist(out.double(), MEANS)
    own = dist.masked_fill(LABELS[None] != labels[:, None], float("inf")).min(1).values
    assert float(own.median()) < 0.6, float(own.median())  # near a mean of its class (component std 0.22)
    # sharper: the student's 1-step map at label y is the teacher's class-y ODE map of the same noise, and at the null
    # label (seen at cond_drop) it regresses x1 on z over the classes: at t = 1 that is the mean of the classes' maps
    z_test = noise[:300].double() / student.sigma_max
    maps = torch.stack([reflow_pairs(teacher(), z_test, nfe=15, class_labels=torch.full((300,), c)) for c in range(3)])
    with torch.no_grad():
        for c in range(3):
            out = sample(Conditioned(d.ema, class_labels=torch.full((300,), c)), noise[:300], method="ddim_fewstep",
                         nfe=1).double()
            assert float((out - maps[c]).norm(dim=1).mean()) < 0.4, c
        null = sample(Conditioned(d.ema, class_labels=torch.full((300,), 3)), noise[:300], method="ddim_fewstep",
                      nfe=1).double()
    to_mean = float((null - maps.mean(0)).norm(dim=1).mean())
    assert to_mean < 1.0 and all(to_mean < float((null - m).norm(dim=1).mean()) / 2 for m in maps), to_mean


def test_reflow_labels_are_checked():
    z = torch.zeros(4, 2)
    student = ModelDenoiser(MLP(MLPConfig(dim=2, hidden=8, depth=1, num_classes=3)), Flow(), "velocity")
    with pytest.raises(ValueError, match="one per pair"):
        ReflowDistiller((z, z), student, labels=torch.zeros(3, dtype=torch.long), null_label=3)
    with pytest.raises(ValueError, match="class_probs"):
        draw_reflow_pairs(teacher(), 4, (2,), nfe=2, generator=torch.Generator(), class_probs=torch.zeros(3))


def test_pairs_are_drawn_by_the_sampler_asked_for():
    def draw(method: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(3)
        return draw_reflow_pairs(teacher(), 64, (2,), nfe=4, generator=g, class_probs=torch.ones(3), method=method)

    z, x1, y = draw("unipc")
    assert torch.allclose(x1, reflow_pairs(teacher(), z, method="unipc", nfe=4, class_labels=y).float(), atol=1e-6)
    assert not torch.allclose(x1, draw("heun")[1], atol=1e-3)  # 4 calls: the two samplers' maps differ


def test_pairs_do_not_depend_on_the_batch_they_are_drawn_in():
    """Each noise keeps its own label across batch boundaries: 300 pairs in batches of 7 (the last one short) are
    the pairs of one batch."""
    z, y = torch.randn(300, 2, generator=torch.Generator().manual_seed(4)), torch.arange(300) % 3
    whole = reflow_pairs(teacher(), z, method="unipc", nfe=4, batch_size=300, class_labels=y)
    assert torch.allclose(reflow_pairs(teacher(), z, method="unipc", nfe=4, batch_size=7, class_labels=y), whole,
                          atol=1e-10)
