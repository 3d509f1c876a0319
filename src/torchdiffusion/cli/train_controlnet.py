"""`torchdiffusion train-controlnet`: train (or resume) a ControlNet that steers a frozen U-Net run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import add_side_run_arguments


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-controlnet", help="train (or resume) a ControlNet on a frozen U-Net run",
                       description="Train a ControlNet (Zhang et al. 2023): a trainable copy of the base U-Net's "
                                   "encoder, joined to its frozen decoder by zero-initialised 1x1 convolutions, reading "
                                   "a control image (the mask or Sobel edges of each training image). The base run is "
                                   "never changed. An existing run directory is resumed from its newest checkpoint. "
                                   "Sample with `torchdiffusion sample DIR --control IMG.png --control-scale S`.")
    p.add_argument("base", help="the base run directory (or checkpoint): a trained pixel-space U-Net")
    p.add_argument("config", help="a YAML file, or the name of a packaged config (shapes_controlnet)")
    add_side_run_arguments(p, "control.kind=edges")
    p.set_defaults(handler=run)


def run(a: argparse.Namespace) -> dict[str, Any]:
    from ..controlnet import train_controlnet
    from ..controlnet.config import load_controlnet_config

    cfg = load_controlnet_config(a.config, a.overrides)
    result = train_controlnet(cfg, a.base, Path(a.out), max_steps=a.max_steps, max_cpu_minutes=a.max_cpu_minutes,
                              progress=not a.no_progress, restart=a.restart)
    return {"run_dir": str(a.out), **result}
