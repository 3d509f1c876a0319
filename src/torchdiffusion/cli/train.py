"""`torchdiffusion train` and `train-classifier`: train (or resume) a run from a YAML config."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import add_device_argument, budget, out_dir, positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    tr = sub.add_parser("train", help="train (or resume) a run from a YAML config",
                        description="Train a model. An existing run directory is resumed from its newest checkpoint.")
    _arguments(tr, "mnist, fashion_mnist, fashion_mnist_cond, toy2d, ...")
    tc = sub.add_parser("train-classifier", help="train a noise-conditional classifier for classifier guidance",
                        description="Train p(y | x_t, t) on noisy data (Dhariwal & Nichol 2021); the config needs "
                                    "loss.kind: classifier. Use it with `sample --classifier RUN --classifier-scale S`.")
    _arguments(tc, "fashion_mnist_classifier, ...")


def _arguments(p: argparse.ArgumentParser, examples: str) -> None:
    p.add_argument("config", help=f"a YAML file, or the name of a packaged config ({examples})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.lr=1e-3 (repeatable)")
    p.add_argument("--max-minutes", type=budget, default=None, help="stop (and checkpoint) after this wall time")
    p.add_argument("--max-cpu-minutes", type=budget, default=None,
                   help="stop (and checkpoint) after this much CPU time of the process, all threads together")
    p.add_argument("--max-steps", type=positive_int(100_000_000), default=None, help="stop at this optimizer step (overrides train.max_steps, also as the end of a curriculum such as iCT's; a --max-cpu-minutes or --max-minutes budget cannot be known in steps, so there set train.max_steps to what fits)")
    p.add_argument("--out", type=out_dir, default=None, help="run directory (default runs/<config name>)")
    p.add_argument("--restart", action="store_true",
                   help="start over at step 0: the run directory's checkpoints and logs are moved aside into "
                        "RUN/restarted-<time>/ (never deleted) instead of resumed")
    p.add_argument("--init-from", default=None, metavar="RUN",
                   help="start a new run from another run's EMA weights (a run directory's newest checkpoint, or a "
                        "checkpoint file) with a fresh optimizer at step 0, e.g. kjv_bd3lm fine-tuned from a kjv_mdlm "
                        "run or kjv_bd3lm_ar adapted from a kjv_ar run; the model must have the same backbone and "
                        "size. Ignored when the run resumes")
    add_device_argument(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def run(a: argparse.Namespace) -> dict[str, Any]:
    from ..config import ConfigError, load_config
    from ..train import Trainer, train

    cfg = load_config(a.config, a.overrides)
    if a.command == "train-classifier" and cfg.loss.kind != "classifier":
        raise ConfigError(f"{a.config}: train-classifier needs loss.kind: classifier (and model.backbone: "
                          f"classifier), got loss.kind {cfg.loss.kind!r}")
    out = Path(a.out or Path("runs") / Path(a.config).stem)
    trainer_class = Trainer
    if cfg.autoencoder:  # latent diffusion: the same loop on the autoencoder's scaled latents
        from ..latent import LatentTrainer as trainer_class
    result = train(cfg, out, max_steps=a.max_steps, max_minutes=a.max_minutes, max_cpu_minutes=a.max_cpu_minutes,
                   progress=not a.no_progress, device=a.device, restart=a.restart, trainer_class=trainer_class,
                   init_from=a.init_from)
    return {"run_dir": str(out), **result}
