"""`torchdiffusion train-autoencoder`: train (or resume) a KL or VQ autoencoder for latent diffusion."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import add_device_argument, budget, out_dir, positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-autoencoder", help="train (or resume) an autoencoder for latent diffusion",
                       description="Train a KL- or VQ-regularised autoencoder with a patch discriminator switched on "
                                   "after loss.disc_start steps (Esser et al. 2021; Rombach et al. 2022). An existing "
                                   "run directory is resumed from its newest checkpoint. Use the run in a diffusion "
                                   "config with `--set autoencoder=DIR`.")
    p.add_argument("config", help="a YAML file, or the name of a packaged config (fashion_mnist_vae, fashion_mnist_vq)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set loss.disc_start=500 (repeatable)")
    p.add_argument("--max-minutes", type=budget, default=None, help="stop (and checkpoint) after this wall time")
    p.add_argument("--max-cpu-minutes", type=budget, default=None,
                   help="stop (and checkpoint) after this much CPU time of the process, all threads together")
    p.add_argument("--max-steps", type=positive_int(100_000_000), default=None,
                   help="stop at this step (overrides train.max_steps)")
    p.add_argument("--out", type=out_dir, required=True, help="run directory")
    p.add_argument("--restart", action="store_true",
                   help="start over at step 0: the run's checkpoints and logs are moved aside, never deleted")
    add_device_argument(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def run(a: argparse.Namespace) -> dict[str, Any]:
    from ..latent import load_autoencoder_config, train_autoencoder

    cfg = load_autoencoder_config(a.config, a.overrides)
    result = train_autoencoder(cfg, Path(a.out), max_steps=a.max_steps, max_minutes=a.max_minutes,
                               max_cpu_minutes=a.max_cpu_minutes, progress=not a.no_progress, device=a.device,
                               restart=a.restart)
    return {"run_dir": str(a.out), **result}
