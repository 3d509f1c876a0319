"""From a run config to objects, through the one registry of names (`torchdiffusion.registry`)."""

from __future__ import annotations

from typing import Any

import torch

from torch import nn

from .config import AUTOREGRESSIVE, ModelConfig, ProcessConfig, is_discrete
from .model_denoiser import ModelDenoiser
from .processes import GaussianProcess
from .registry import DISCRETE_PROCESSES, PROCESSES


def build_process(cfg: ProcessConfig) -> GaussianProcess:
    """The forward process named by cfg.name, built from the section's parameters."""
    return PROCESSES.lookup(cfg.name).from_config(cfg)


def build_discrete_process(cfg: ProcessConfig) -> Any:
    """The token process named by cfg.name: a CategoricalProcess, or the autoregressive factorisation."""
    if cfg.name == AUTOREGRESSIVE:
        from .discrete.autoregressive import Autoregressive

        return Autoregressive(cfg.vocab_size)
    cls = DISCRETE_PROCESSES.lookup(cfg.name)
    if cfg.name == "masked":
        return cls(cfg.vocab_size, schedule=cfg.masking_schedule, block_size=cfg.block_size)
    if cfg.marginal is not None:  # the mutual_info schedule of a non-absorbing kernel, solved against it
        return cls(cfg.vocab_size, T=cfg.T, schedule=cfg.schedule, marginal=torch.tensor(cfg.marginal, dtype=torch.float64))
    return cls(cfg.vocab_size, T=cfg.T, schedule=cfg.schedule)


def token_model(backbone: nn.Module, process: Any) -> nn.Module:
    """A token model around a sequence backbone: the autoregressive model, or the p(x0 | x_t) denoiser."""
    from .discrete.autoregressive import Autoregressive, AutoregressiveModel
    from .discrete.block import BlockDenoiser
    from .discrete.denoiser import BackboneDenoiser

    if isinstance(process, Autoregressive):
        return AutoregressiveModel(backbone, process)
    if getattr(process, "block_size", None) is not None:  # block diffusion (BD3-LM)
        return BlockDenoiser(backbone, process)
    return BackboneDenoiser(backbone, process)


def build_model(model_cfg: ModelConfig, process_cfg: ProcessConfig) -> tuple[nn.Module, Any]:
    """(denoiser wrapping a fresh backbone, the backbone's typed config); token runs get their token model."""
    from .nn import build_backbone

    backbone, bcfg = build_backbone(model_cfg.backbone, dict(model_cfg.params))
    if is_discrete(process_cfg):
        return token_model(backbone, build_discrete_process(process_cfg)), bcfg
    learned = bool(getattr(bcfg, "learned_variance", False))
    model = ModelDenoiser(backbone, build_process(process_cfg), model_cfg.prediction,
                          sigma_data=model_cfg.sigma_data, learned_variance=learned)
    return model, bcfg


def backbone_shapes(model_cfg: ModelConfig) -> dict[str, torch.Size]:
    """The shape of every state-dict entry of the backbone model_cfg describes, built on the "meta" device so no
    memory is allocated: a config from an untrusted file can be checked against its tensors before it is built."""
    from .nn import build_backbone

    with torch.device("meta"):
        backbone, _ = build_backbone(model_cfg.backbone, dict(model_cfg.params))
    return {k: v.shape for k, v in backbone.state_dict().items()}
