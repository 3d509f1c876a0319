"""ControlNet run configuration (`torchdiffusion train-controlnet BASE_RUN CONFIG`): typed sections, strict YAML."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import DataConfig, read_config_data
from ..typed_dict import ConfigError, from_dict
from .conditions import CONTROL_KINDS


@dataclass
class ControlConfig:
    kind: str = "mask"                           # mask (of the shapes) | edges (Sobel magnitude), from each image
    hint_channels: int = 16                      # width of the condition encoder's hidden convs


@dataclass
class ControlTrainConfig:
    batch_size: int = 32
    lr: float = 1.0e-4                           # Adam on the ControlNet alone; the base stays frozen
    grad_clip: float = 1.0                       # max global grad norm (0 disables)
    max_steps: int = 5000
    log_every: int = 50
    ckpt_every: int = 250
    keep_last: int = 3
    seed: int = 0
    num_threads: int = 0                         # torch threads (0 = leave as is)


@dataclass
class ControlNetRunConfig:
    data: DataConfig = field(default_factory=DataConfig)  # images the control images are derived from
    control: ControlConfig = field(default_factory=ControlConfig)
    train: ControlTrainConfig = field(default_factory=ControlTrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_controlnet_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ControlNetRunConfig:
    """Load a YAML ControlNet config (a path or a packaged name) with key=value overrides, and check its ranges."""
    cfg = from_dict(ControlNetRunConfig, read_config_data(path, overrides))
    if cfg.control.kind not in CONTROL_KINDS:
        raise ConfigError(f"control.kind: {cfg.control.kind!r} is not one of {', '.join(CONTROL_KINDS)}")
    tc = cfg.train
    for name, v, lo in [("control.hint_channels", cfg.control.hint_channels, 1), ("train.batch_size", tc.batch_size, 1),
                        ("train.max_steps", tc.max_steps, 1), ("train.log_every", tc.log_every, 1),
                        ("train.ckpt_every", tc.ckpt_every, 1), ("train.keep_last", tc.keep_last, 1),
                        ("train.num_threads", tc.num_threads, 0), ("train.grad_clip", tc.grad_clip, 0)]:
        if not v >= lo or v == float("inf"):  # NaN fails too
            raise ConfigError(f"{name}: must be a finite number >= {lo}, got {v}")
    if not 0 < tc.lr < float("inf"):
        raise ConfigError(f"train.lr: must be a finite number > 0, got {tc.lr}")
    return cfg
