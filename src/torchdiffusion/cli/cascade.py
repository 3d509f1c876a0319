"""`torchdiffusion cascade`: a base model's samples super-resolved by an SR model (cascaded diffusion); PNGs out."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from .common import add_device_argument, non_negative_float, non_negative_int, out_dir, positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    cp = sub.add_parser(
        "cascade", help="sample a base model, then super-resolve with an SR model (cascaded diffusion)",
        description="Cascaded diffusion (Ho et al. 2021): NUM samples of BASE_RUN, average-pooled to SR_RUN's "
                    "low-resolution size, noised at --aug-sigma (noise conditioning augmentation, the level the SR "
                    "model is told), then super-resolved by SR_RUN (a run of fashion_mnist_sr7 or another config with "
                    "model.params.low_res_size). Writes OUT/base/*.png, OUT/low_res/*.png, OUT/sr/*.png and "
                    "OUT/grid.png (rows: base sample, its low resolution, the SR output). The last stdout line is "
                    "JSON with the paths and seconds.")
    cp.add_argument("base_run", help="the base model: a checkpoint file or run directory")
    cp.add_argument("sr_run", help="the super-resolution model: a checkpoint file or run directory")
    cp.add_argument("--num", type=positive_int(100_000), default=16, help="number of samples")
    cp.add_argument("--out", type=out_dir, required=True, help="output directory")
    cp.add_argument("--aug-sigma", type=non_negative_float, default=None, metavar="S",
                    help="std of the Gaussian noise put on the low-resolution input (default: the SR run's "
                         "superres.aug_sigma)")
    cp.add_argument("--base-sampler", default=None, help="default: the base run's sample.sampler")
    cp.add_argument("--base-steps", type=positive_int(10_000), default=None, help="default: the base run's")
    cp.add_argument("--sr-sampler", default=None, help="default: the SR run's sample.sampler")
    cp.add_argument("--sr-steps", type=positive_int(10_000), default=None, help="default: the SR run's")
    cp.add_argument("--seed", type=non_negative_int, default=0,
                    help="base sample i uses seed + i, its super-resolution seed + num + i")
    cp.add_argument("--batch-size", type=positive_int(100_000), default=256)
    add_device_argument(cp)
    cp.set_defaults(handler=run)


def run(a: argparse.Namespace) -> dict[str, Any]:
    import torch

    from ..data import save_image_files, save_image_tiles
    from ..devices import resolve_device
    from ..inverse.superres import cascade, low_res_size
    from ..loading import load_run

    out = Path(a.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {a.out} is a file; give a directory")
    device = resolve_device(a.device)
    base, sr = load_run(a.base_run, device=device), load_run(a.sr_run, device=device)
    for path, run_ in ((a.base_run, base), (a.sr_run, sr)):
        if run_.config.loss.kind == "classifier":
            raise ValueError(f"{path} is a noise-conditional classifier, not a diffusion model")
    if getattr(base.model.backbone.config, "low_res_size", 0):
        raise ValueError(f"{a.base_run} is a super-resolution model; the base of a cascade draws images from noise")
    low_res_size(sr.model)  # a clear error when SR_RUN is not a super-resolution model
    aug = sr.config.superres.aug_sigma if a.aug_sigma is None else a.aug_sigma
    t0 = time.perf_counter()
    result = cascade(base.model, sr.model, a.num, base_sampler=a.base_sampler or base.config.sample.sampler,
                     base_steps=a.base_steps or base.config.sample.steps,
                     sr_sampler=a.sr_sampler or sr.config.sample.sampler, sr_steps=a.sr_steps or sr.config.sample.steps,
                     aug_sigma=aug, seed=a.seed, batch_size=a.batch_size, progress=sys.stderr.isatty())
    seconds = time.perf_counter() - t0
    base_x, sr_x = result.base.clamp(-1, 1), result.samples.clamp(-1, 1)
    for name, images in (("base", base_x), ("low_res", result.low_res), ("sr", sr_x)):
        save_image_files(images, out / name)
    # every stage shown at the SR size (nearest neighbour), so the grid's rows line up
    shown = [torch.nn.functional.interpolate(x, size=sr_x.shape[-2:], mode="nearest") for x in (base_x, result.low_res)]
    ncol = min(a.num, 16)
    rows = [torch.cat([x[i:i + ncol] for x in (*shown, sr_x)]) for i in range(0, a.num, ncol)]
    grid = save_image_tiles(torch.cat(rows), out / "grid.png", nrow=ncol)
    return {"base": base.meta["path"], "sr": sr.meta["path"], "num": a.num, "aug_sigma": aug,
            "seconds": round(seconds, 3), "out": str(out), "grid": str(grid)}
