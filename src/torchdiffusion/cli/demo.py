"""`torchdiffusion demo`: train a small MNIST model on this machine and write outputs/demo/samples.png."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

from .common import add_device_argument, budget, out_dir


def add_parser(sub: argparse._SubParsersAction) -> None:
    dm = sub.add_parser("demo", help="train a small MNIST model on this CPU and write outputs/demo/samples.png")
    dm.add_argument("--minutes", type=budget, default=5.5, help="training time budget")
    dm.add_argument("--out", type=out_dir, default="outputs/demo")
    add_device_argument(dm)
    dm.set_defaults(handler=run)


def run(a: argparse.Namespace) -> dict[str, Any]:
    from ..config import load_config
    from ..data import save_image_tiles
    from ..generate import generate
    from ..train import Trainer

    out = Path(a.out)
    cfg = load_config("mnist")
    trainer = Trainer(cfg, out / "run", progress=sys.stderr.isatty(), device=a.device)
    print(f"[torchdiffusion] demo: training a {cfg.model.backbone} on MNIST for {a.minutes} minutes "
          f"on {trainer.dist.device} ({torch.get_num_threads()} threads) -> {out}", flush=True)
    result = trainer.run(max_minutes=a.minutes)
    t0 = time.perf_counter()
    x, nfe = generate(trainer.ema, trainer.backbone_cfg.data_shape, 64, sampler=cfg.sample.sampler, steps=cfg.sample.steps,
                      seed=0, **cfg.sample.options)
    path = save_image_tiles(x.clamp(-1, 1), out / "samples.png") or out / "samples.png"
    return {"samples": str(path), "train_steps": result["step"], "train_seconds": round(result["seconds"], 1),
            "nfe": nfe, "sample_seconds": round(time.perf_counter() - t0, 2), "checkpoint": result["checkpoint"]}
