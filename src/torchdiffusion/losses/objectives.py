"""Training objectives by `loss.kind`, the names `torchdiffusion.registry.LOSSES` lists: how the trainer draws t
and the per-sample loss of a batch, so the trainer calls one function whatever the kind."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..model_denoiser import ModelDenoiser
from .consistency import consistency_training_loss
from .denoising import classifier_loss, diffusion_loss
from .hybrid import hybrid_loss

Tensor = torch.Tensor
# (model, x0, t, eps, labels, loss config, **cond) -> per-sample loss (B,)
LossFn = Callable[..., Tensor]


@dataclass(frozen=True)
class TrainingObjective:
    """A loss kind: its per-sample loss, how its t is drawn (None: the config's loss.t_sampling), and whether it
    takes the training progress (step / train.max_steps, for a curriculum)."""

    loss: LossFn
    t_sampling: str | None = None
    uses_progress: bool = False

    def __call__(self, model: ModelDenoiser, x0: Tensor, *, t: Tensor, eps: Tensor, labels: Tensor, config: Any,
                 progress: float = 0.0, **cond: Any) -> Tensor:
        if self.uses_progress:
            cond["progress"] = progress
        return self.loss(model, x0, t=t, eps=eps, labels=labels, config=config, **cond)


def _simple(model: ModelDenoiser, x0: Tensor, *, t: Tensor, eps: Tensor, labels: Tensor, config: Any,
            **cond: Any) -> Tensor:
    return diffusion_loss(model, x0, weighting=config.weighting, t=t, eps=eps, gamma=config.gamma, **cond)


def _edm(model: ModelDenoiser, x0: Tensor, *, t: Tensor, eps: Tensor, labels: Tensor, config: Any,
         **cond: Any) -> Tensor:
    return diffusion_loss(model, x0, weighting="edm", t=t, eps=eps, **cond)


def _hybrid(model: ModelDenoiser, x0: Tensor, *, t: Tensor, eps: Tensor, labels: Tensor, config: Any,
            **cond: Any) -> Tensor:
    return hybrid_loss(model, x0, lam=config.hybrid_lambda, t=t, eps=eps, **cond)


def _classifier(model: ModelDenoiser, x0: Tensor, *, t: Tensor, eps: Tensor, labels: Tensor, config: Any,
                **cond: Any) -> Tensor:
    return classifier_loss(model, x0, labels, t=t, eps=eps)


SIMPLE = TrainingObjective(_simple)                       # L_simple on the model's target, any weighting (Ho et al. 2020)
EDM = TrainingObjective(_edm, t_sampling="lognormal")     # Karras et al. 2022, eq. 8
HYBRID = TrainingObjective(_hybrid, t_sampling="uniform")  # Nichol & Dhariwal 2021, eq. 16 (uniform t in the trainer)
def _consistency(model: ModelDenoiser, x0: Tensor, *, t: Tensor, eps: Tensor, labels: Tensor, config: Any,
                 progress: float, **cond: Any) -> Tensor:
    p = model.process  # t uniform on [t_min, t_max] is the quantile of iCT's level distribution
    u = (t - p.t_min) / (p.t_max - p.t_min)
    return consistency_training_loss(model, x0, u=u, eps=eps, progress=progress, **cond)


CLASSIFIER = TrainingObjective(_classifier, t_sampling="uniform")  # noisy p(y | x_t) (Dhariwal & Nichol 2021)
CONSISTENCY = TrainingObjective(_consistency, t_sampling="uniform", uses_progress=True)  # iCT (Song & Dhariwal 2023)
