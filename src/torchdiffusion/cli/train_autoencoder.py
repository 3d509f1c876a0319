"""`torchdiffusion train-autoencoder`: train (or resume) a KL or VQ autoencoder for latent diffusion."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import add_device_argument, add_side_run_arguments, budget


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-autoencoder", help="train (or resume) an autoencoder for latent diffusion",
                       description="Train a KL- or VQ-regularised autoencoder with a patch discriminator switched on "
                                   "after loss.disc_start steps (Esser et al. 2021; Rombach et al. 2022). An existing "
                                   "run directory is resumed from its newest checkpoint. Use the run in a diffusion "
                                   "config with `--set autoencoder=DIR`.")
    p.add_argument("config", help="a YAML file, or the name of a packaged config (fashion_mnist_vae, fashion_mnist_vq)")
    p.add_argument("--max-minutes", type=budget, default=None, help="stop (and checkpoint) after this wall time")
    add_side_run_arguments(p, "loss.disc_start=500")
    add_device_argument(p)
    p.set_defaults(handler=run)


def run(a: argparse.Namespace) -> dict[str, Any]:
    from ..latent import load_autoencoder_config, train_autoencoder

    cfg = load_autoencoder_config(a.config, a.overrides)
    result = train_autoencoder(cfg, Path(a.out), max_steps=a.max_steps, max_minutes=a.max_minutes,
                               max_cpu_minutes=a.max_cpu_minutes, progress=not a.no_progress, device=a.device,
                               restart=a.restart)
    return {"run_dir": str(a.out), **result}
