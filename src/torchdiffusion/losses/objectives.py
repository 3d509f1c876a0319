"""Training objectives by `loss.kind`, the names `torchdiffusion.registry.LOSSES` lists: how the trainer draws t
and the per-sample loss of a batch, so the trainer calls one function whatever the kind."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..model_denoiser import ModelDenoiser
from .denoising import classifier_loss, diffusion_loss
from .hybrid import hybrid_loss

Tensor = torch.Tensor
# (model, x0, t, eps, labels, loss config, **cond) -> per-sample loss (B,)
LossFn = Callable[..., Tensor]


@dataclass(frozen=True)
class TrainingObjective:
    """A loss kind: its per-sample loss and how its t is drawn (None: the config's loss.t_sampling)."""

    loss: LossFn
    t_sampling: str | None = None

    def __call__(self, model: ModelDenoiser, x0: Tensor, *, t: Tensor, eps: Tensor, labels: Tensor, config: Any,
                 **cond: Any) -> Tensor:
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
CLASSIFIER = TrainingObjective(_classifier, t_sampling="uniform")  # noisy p(y | x_t) (Dhariwal & Nichol 2021)
