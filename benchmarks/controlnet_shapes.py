"""ControlNet on the shapes: how well samples follow a mask, against the base model without control.

Trains (or resumes) a ControlNet on the base run for --max-cpu-minutes, then for N held-out shapes images (a seed the
training never saw) takes the mask of the shapes as control, samples from the same start noise with the control
(scale 1) and without it (scale 0, the base exactly), and reports the mean IoU of each sample's shape mask with the
control mask.

    PYTHONPATH=src python benchmarks/controlnet_shapes.py --base runs/shapes --out runs/shapes_control \
        --max-cpu-minutes 15 --num 64
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from torchdiffusion.controlnet import load_controlled_run, train_controlnet
from torchdiffusion.controlnet.conditions import shape_mask
from torchdiffusion.controlnet.config import load_controlnet_config
from torchdiffusion.data import save_image_tiles
from torchdiffusion.data.shapes import load_shapes
from torchdiffusion.generate import start_noise
from torchdiffusion.sampling import sample


def iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample intersection over union of two {-1, 1} masks (B, 1, H, W)."""
    a, b = a > 0, b > 0
    inter = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float().clamp_min(1)
    return inter / union


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True, help="base shapes U-Net run")
    ap.add_argument("--out", required=True, help="ControlNet run directory (resumed when it exists)")
    ap.add_argument("--config", default="shapes_controlnet")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--max-cpu-minutes", type=float, default=15.0, help="ControlNet training budget")
    ap.add_argument("--num", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--method", default="ipndm")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--figure", default=None, metavar="FILE.png",
                    help="also write 8 columns: control masks, the base's samples, the controlled samples")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = load_controlnet_config(a.config, [*a.overrides, f"train.num_threads={a.threads}"])
    trained = train_controlnet(cfg, a.base, Path(a.out), max_cpu_minutes=a.max_cpu_minutes, progress=False)
    run = load_controlled_run(a.out)
    size = run.data_shape[-1]
    test = load_shapes(a.num, seed=12345, size=size)  # not the training seed
    control = shape_mask(test.images)
    x = start_noise(run.model, run.data_shape, a.num, 0)
    c0 = time.process_time()
    result, samples = {}, {}
    with torch.no_grad():
        for scale in (0.0, 1.0):
            run.model.backbone.scale, run.model.backbone.control = scale, control
            out = sample(run.model, x, method=a.method, nfe=a.steps).clamp(-1, 1)
            result[scale], samples[scale] = iou(shape_mask(out), control), out
        if a.figure:  # rows: control, scale 0, scale 1 (the same noise)
            rows = [control[:8].expand(-1, 3, -1, -1), *(samples[k][:8] for k in (0.0, 1.0))]
            save_image_tiles(torch.cat(rows), a.figure, nrow=8)
        data_iou = iou(shape_mask(load_shapes(a.num, seed=777, size=size).images), control)
    print(f"# base {a.base}, ControlNet {a.out} step {trained['step']} ({trained['cpu_seconds']:.0f} CPU s this call), "
          f"{a.num} held-out masks, {a.method} {a.steps} steps, {platform.machine()}, torch {torch.__version__}, "
          f"sampling {time.process_time() - c0:.0f} CPU s")
    print("| model | mean mask IoU with the control | median |")
    print("|---|---:|---:|")
    print(f"| base, no control (scale 0) | {result[0.0].mean():.3f} | {result[0.0].median():.3f} |")
    print(f"| ControlNet, scale 1 | {result[1.0].mean():.3f} | {result[1.0].median():.3f} |")
    print(f"| (random other shapes images) | {data_iou.mean():.3f} | {data_iou.median():.3f} |")


if __name__ == "__main__":
    main()
