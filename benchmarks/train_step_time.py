"""Where the training-throughput ratio to diffusers comes from: seconds per training step, one thread, batch 64.

Four trainers, timed in interleaved rounds in one process (so machine noise hits all of them alike), median of
the rounds:

  ours          configs/fashion_mnist.yaml as shipped (U-Net 16 x (1, 3, 8), narrow upsampling convs, bf16 autocast
                where the CPU has it)
  ours-48       the same recipe on the benchmark's diffusers layout at width 48 (48 x (1, 2, 2), upsampling convs
                keeping the coarse width as UNet2DModel's do)
  diffusers     UNet2DModel of train_vs_diffusers.py at width 50 (2.70M parameters), eps-MSE,
                AdamW, EMA: channel counts off multiples of 16 cost it far more than its 8 % extra FLOPs
  diffusers-48  the same at width 48 (2.50M), train_vs_diffusers.py's default: ours-48 / diffusers-48 is what the
                implementation buys at equal FLOPs, ours / diffusers-48 the ratio that benchmark measures

    .venv/bin/python benchmarks/train_step_time.py [--rounds 5] [--diffusers-width 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))
from train_vs_diffusers import diffusers_recipe  # noqa: E402

BATCH = 64


def ours(overrides: list[str], tmp: str) -> tuple[Callable[[], None], torch.nn.Module]:
    from torchdiffusion.config import load_config
    from torchdiffusion.train import Trainer

    cfg = load_config("fashion_mnist", ["train.sample_every=0", "train.ckpt_every=100000", *overrides])
    tr = Trainer(cfg, tmp, progress=False, quiet=True)
    return tr.train_step, tr.model.backbone


def diffusers(width: int) -> tuple[Callable[[], None], torch.nn.Module]:
    from torchdiffusion.data import load_fashion_mnist

    x, _ = load_fashion_mnist("train")
    model, _, train_step = diffusers_recipe(width)
    return lambda: train_step(x[torch.randint(0, len(x), (BATCH,))]), model


def mflops(model: torch.nn.Module, ours_model: bool) -> float:
    """Forward MFLOP per image (torch's FLOP counter: matmuls and convolutions)."""
    x = torch.randn(1, 1, 28, 28)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x, torch.tensor([0.5])) if ours_model else model(x, torch.tensor([500]))
    return fc.get_total_flops() / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per trainer per round")
    ap.add_argument("--diffusers-width", type=int, default=50)
    a = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {"ours": ours([], f"{tmp}/a"),
                "ours-48": ours(["model.params.base_channels=48", "model.params.channel_mult=[1,2,2]",
                                 "model.params.narrow_upsample=false"], f"{tmp}/b"),
                "diffusers": diffusers(a.diffusers_width), "diffusers-48": diffusers(48)}
        for step, _ in runs.values():  # warm-up
            step()
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(a.rounds):
            for name, (step, _) in runs.items():
                t0 = time.perf_counter()
                for _ in range(a.steps):
                    step()
                times[name].append((time.perf_counter() - t0) / a.steps)
    sec = {k: statistics.median(v) for k, v in times.items()}
    print(f"| trainer | parameters | forward MFLOP / image | s / step (median of {a.rounds}) | images / s |")
    print("|---|---:|---:|---:|---:|")
    for name, (_, model) in runs.items():
        params = sum(p.numel() for p in model.parameters())
        print(f"| {name} | {params:,} | {mflops(model, not name.startswith('diffusers')):.0f} | {sec[name]:.3f} | "
              f"{BATCH / sec[name]:.1f} |")
    print(f"\nthroughput ours / diffusers-48 {sec['diffusers-48'] / sec['ours']:.2f}x, ours / diffusers (width 50) "
          f"{sec['diffusers'] / sec['ours']:.2f}x; "
          f"same layout and FLOPs, ours-48 / diffusers-48: {sec['diffusers-48'] / sec['ours-48']:.2f}x; "
          f"layout, ours / ours-48: {sec['ours-48'] / sec['ours']:.2f}x")


if __name__ == "__main__":
    main()
