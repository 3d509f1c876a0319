"""From a run config to objects, through the one registry of names (`torchdiffusion.registry`)."""

from __future__ import annotations

from typing import Any

import torch

from .config import ModelConfig, ProcessConfig
from .model_denoiser import ModelDenoiser
from .processes import GaussianProcess
from .registry import PROCESSES


def build_process(cfg: ProcessConfig) -> GaussianProcess:
    """The forward process named by cfg.name, built from the section's parameters."""
    return PROCESSES.lookup(cfg.name).from_config(cfg)


def build_model(model_cfg: ModelConfig, process_cfg: ProcessConfig) -> tuple[ModelDenoiser, Any]:
    """(denoiser wrapping a fresh backbone, the backbone's typed config)."""
    from .nn import build_backbone

    backbone, bcfg = build_backbone(model_cfg.backbone, dict(model_cfg.params))
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
