"""Backbones: networks (x, noise_level, **cond) -> tensor that know nothing of processes or samplers.

`build_backbone` builds one by its registered name (`torchdiffusion.registry.BACKBONES`); configs are dataclasses with
`to_dict` / `from_dict`, saved beside the weights.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..registry import BACKBONES
from .classifier import ClassifierConfig, NoisyClassifier
from .config import BackboneConfig
from .dit import DiT, DiTConfig
from .embeddings import NoiseEmbedding, timestep_embedding
from .mlp import MLP, MLPConfig
from .unet import UNet, UNetConfig

__all__ = [
    "BackboneConfig", "ClassifierConfig", "DiT", "DiTConfig", "MLP", "MLPConfig", "NoiseEmbedding",
    "NoisyClassifier", "UNet", "UNetConfig",
    "build_backbone", "count_parameters", "timestep_embedding",
]


def build_backbone(name: str, config: dict[str, Any] | BackboneConfig) -> tuple[nn.Module, BackboneConfig]:
    """Build the backbone registered as name (`torchdiffusion.registry.BACKBONES`) from a config dict (or its config
    dataclass); returns (module, config)."""
    module_cls = BACKBONES.lookup(name)
    config_cls = module_cls.config_class
    if isinstance(config, BackboneConfig):
        if not isinstance(config, config_cls):
            raise ValueError(f"backbone {name!r} needs a {config_cls.__name__}, got {type(config).__name__}")
        cfg = config
    else:
        cfg = config_cls.from_dict(config)
    return module_cls(cfg), cfg


def count_parameters(module: nn.Module) -> int:
    """Number of scalar parameters (shared parameters counted once)."""
    return sum(p.numel() for p in module.parameters())
