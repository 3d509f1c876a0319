"""Autoencoder run configuration (`torchdiffusion train-autoencoder CONFIG`): typed sections, strict YAML loading,
`--set key=value` overrides, range checks that name the key."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import DataConfig, check_bound, LIMITS, read_config_data
from ..typed_dict import ConfigError, from_dict
from .autoencoder import AutoencoderConfig
from .discriminator import GAN_LOSSES
from .losses import RECONSTRUCTIONS


@dataclass
class AutoencoderLossConfig:
    reconstruction: str = "l1"                   # l1 | l2, mean over pixels
    kl_weight: float = 1.0e-6                    # kind kl: weight of KL(q(z|x) || N(0, I)) per pixel (LDM's 1e-6)
    commitment: float = 0.25                     # kind vq: beta of the commitment loss
    perceptual_weight: float = 0.0               # > 0: the LPIPS-like distance on a feature network
    perceptual_features: str | None = None       # that network: a .safetensors file (train-features --out) or a
                                                 # dataset name whose cached network is used (trained if missing)
    disc_start: int = 1000                       # the GAN term is switched on at this step (0: from the start)
    disc_weight: float = 0.5                     # its weight, times the adaptive weight (0: no discriminator)
    disc_loss: str = "hinge"                     # hinge | non_saturating
    adaptive_weight: bool = True                 # Esser et al. 2021, eq. 7; false: the weight is disc_weight alone
    disc_channels: int = 64                      # width of the patch discriminator's first layer
    disc_layers: int = 2                         # stride-2 layers (28x28 -> 5x5 patches with 2)


@dataclass
class AutoencoderTrainConfig:
    batch_size: int = 32
    lr: float = 2.0e-4                           # Adam for the autoencoder (betas 0.5, 0.9 as in VQGAN)
    disc_lr: float = 2.0e-4                      # Adam for the discriminator
    ema_decay: float = 0.999                     # EMA of the autoencoder weights (0: the EMA copy is the weights)
    grad_clip: float = 1.0                       # max global grad norm of the autoencoder (0 disables)
    max_steps: int = 20_000
    log_every: int = 50
    sample_every: int = 1000                     # PNG of originals over reconstructions every N steps (0 disables)
    ckpt_every: int = 500
    keep_last: int = 3
    seed: int = 0
    num_threads: int = 0                         # torch threads (0 = leave as is)


@dataclass
class AutoencoderRunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    loss: AutoencoderLossConfig = field(default_factory=AutoencoderLossConfig)
    train: AutoencoderTrainConfig = field(default_factory=AutoencoderTrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_autoencoder_config(path: str | Path | None = None, overrides: list[str] | None = None
                            ) -> AutoencoderRunConfig:
    """Load a YAML autoencoder config (a path or a packaged name) with key=value overrides, and check it."""
    data = read_config_data(path, overrides)
    try:
        cfg = from_dict(AutoencoderRunConfig, data)
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:  # AutoencoderConfig's own range checks
        raise ConfigError(f"model: {e}") from None
    validate_autoencoder_config(cfg)
    return cfg


def validate_autoencoder_config(cfg: AutoencoderRunConfig) -> None:
    """Names and ranges the dataclass types alone cannot check."""
    from ..registry import DATASETS

    lc, tc = cfg.loss, cfg.train
    if cfg.data.name not in DATASETS:
        raise ConfigError(f"data.name: {cfg.data.name!r} is not one of {', '.join(DATASETS)}")
    if cfg.data.name.startswith("toy:"):
        raise ConfigError(f"data.name: an autoencoder needs images; {cfg.data.name!r} is a 2-D toy set")
    if lc.reconstruction not in RECONSTRUCTIONS:
        raise ConfigError(f"loss.reconstruction: {lc.reconstruction!r} is not one of {', '.join(RECONSTRUCTIONS)}")
    if lc.disc_loss not in GAN_LOSSES:
        raise ConfigError(f"loss.disc_loss: {lc.disc_loss!r} is not one of {', '.join(GAN_LOSSES)}")
    for path, v, lo in [("loss.kl_weight", lc.kl_weight, 0), ("loss.commitment", lc.commitment, 0),
                        ("loss.perceptual_weight", lc.perceptual_weight, 0), ("loss.disc_start", lc.disc_start, 0),
                        ("loss.disc_weight", lc.disc_weight, 0), ("loss.disc_channels", lc.disc_channels, 1),
                        ("loss.disc_layers", lc.disc_layers, 1), ("train.batch_size", tc.batch_size, 1),
                        ("train.max_steps", tc.max_steps, 1), ("train.log_every", tc.log_every, 1),
                        ("train.sample_every", tc.sample_every, 0), ("train.ckpt_every", tc.ckpt_every, 1),
                        ("train.keep_last", tc.keep_last, 1), ("train.num_threads", tc.num_threads, 0),
                        ("train.grad_clip", tc.grad_clip, 0)]:
        if not v >= lo or v == float("inf"):  # written so that NaN fails too
            raise ConfigError(f"{path}: must be a finite number >= {lo}, got {v}")
    for path, v in [("train.lr", tc.lr), ("train.disc_lr", tc.disc_lr)]:
        if not 0 < v < float("inf"):
            raise ConfigError(f"{path}: must be a finite number > 0, got {v}")
    if not 0 <= tc.ema_decay < 1:
        raise ConfigError(f"train.ema_decay: must be in [0, 1), got {tc.ema_decay}")
    if lc.perceptual_weight > 0 and not lc.perceptual_features:
        raise ConfigError("loss.perceptual_weight > 0 needs loss.perceptual_features: a feature network file "
                          "(`torchdiffusion train-features DATASET --out FILE.safetensors`) or a dataset name")
    if cfg.data.limit is not None and cfg.data.limit < 1:
        raise ConfigError(f"data.limit: must be >= 1 or null, got {cfg.data.limit}")
    for name in ("train.batch_size", "train.max_steps", "data.limit"):
        section, key = name.split(".")
        value = getattr(getattr(cfg, section), key)
        if value is not None:
            check_bound(name, value, LIMITS[name])
