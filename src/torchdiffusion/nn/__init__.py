"""Backbones: networks (x, noise_level, **cond) -> tensor that know nothing of processes or samplers.

`build_backbone` is the one place a backbone is looked up by name; configs are dataclasses with
`to_dict` / `from_dict`, saved beside the weights.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .classifier import ClassifierConfig, NoisyClassifier
from .config import BackboneConfig
from .dit import DiT, DiTConfig
from .embeddings import NoiseEmbedding, timestep_embedding
from .mlp import MLP, MLPConfig
from .unet import UNet, UNetConfig

__all__ = [
    "BACKBONES", "BackboneConfig", "ClassifierConfig", "DiT", "DiTConfig", "MLP", "MLPConfig", "NoiseEmbedding",
    "NoisyClassifier", "UNet", "UNetConfig",
    "build_backbone", "count_parameters", "timestep_embedding",
]

# name -> (config class, module class)
BACKBONES: dict[str, tuple[type[BackboneConfig], type[nn.Module]]] = {
    "classifier": (ClassifierConfig, NoisyClassifier),
    "dit": (DiTConfig, DiT),
    "mlp": (MLPConfig, MLP),
    "unet": (UNetConfig, UNet),
}


def build_backbone(name: str, config: dict[str, Any] | BackboneConfig) -> tuple[nn.Module, BackboneConfig]:
    """Build the backbone registered as name from a config dict (or its config dataclass); returns (module, config)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known backbones: {sorted(BACKBONES)}")
    config_cls, module_cls = BACKBONES[name]
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
