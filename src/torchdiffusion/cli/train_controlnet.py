"""`torchdiffusion train-controlnet`: train (or resume) a ControlNet that steers a frozen U-Net run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import budget, out_dir, positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-controlnet", help="train (or resume) a ControlNet on a frozen U-Net run",
                       description="Train a ControlNet (Zhang et al. 2023): a trainable copy of the base U-Net's "
                                   "encoder, joined to its frozen decoder by zero-initialised 1x1 convolutions, reading "
                                   "a control image (the mask or Sobel edges of each training image). The base run is "
                                   "never changed. An existing run directory is resumed from its newest checkpoint. "
                                   "Sample with `torchdiffusion sample DIR --control IMG.png --control-scale S`.")
    p.add_argument("base", help="the base run directory (or checkpoint): a trained pixel-space U-Net")
    p.add_argument("config", help="a YAML file, or the name of a packaged config (shapes_controlnet)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set control.kind=edges (repeatable)")
    p.add_argument("--max-cpu-minutes", type=budget, default=None,
                   help="stop (and checkpoint) after this much CPU time of the process, all threads together")
    p.add_argument("--max-steps", type=positive_int(100_000_000), default=None,
                   help="stop at this step (overrides train.max_steps)")
    p.add_argument("--out", type=out_dir, required=True, help="run directory")
    p.add_argument("--restart", action="store_true",
                   help="start over at step 0: the run's checkpoints and logs are moved aside, never deleted")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def run(a: argparse.Namespace) -> dict[str, Any]:
    from ..controlnet import train_controlnet
    from ..controlnet.config import load_controlnet_config

    cfg = load_controlnet_config(a.config, a.overrides)
    result = train_controlnet(cfg, a.base, Path(a.out), max_steps=a.max_steps, max_cpu_minutes=a.max_cpu_minutes,
                              progress=not a.no_progress, restart=a.restart)
    return {"run_dir": str(a.out), **result}
