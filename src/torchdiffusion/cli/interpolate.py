"""`torchdiffusion interpolate`: images between two images, by slerp of their inverted noises."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from .common import positive_int
from .edit_common import IMAGE_HELP, add_model_arguments, common_settings, device_of, load_image_model, PerBatch, \
    to_model, write_results


def add_parser(sub: argparse._SubParsersAction) -> None:
    sp = sub.add_parser("interpolate", help="interpolate between two images through their noises",
                        description="Both images are inverted deterministically (DDIM or Heun) to noise, their "
                                    "noises spherically interpolated (slerp) at --num evenly spaced points from A "
                                    "(t = 0) to B (t = 1), and each decoded. Deterministic: no seed. The last "
                                    "stdout line is JSON.")
    sp.add_argument("--a", required=True, metavar="IMG.png", help="the first image: " + IMAGE_HELP)
    sp.add_argument("--b", required=True, metavar="IMG.png", help="the second image")
    sp.add_argument("--sampler", default="ddim", choices=["ddim", "heun"], help="the deterministic sampler inverted")
    sp.add_argument("--nfe", type=positive_int(100_000), default=50, help="denoiser calls of each inversion")
    add_model_arguments(sp, seeded=False, num_help="number of images from A to B, both included (>= 2)")
    sp.set_defaults(handler=run)


def run(a: argparse.Namespace) -> dict[str, Any]:
    from ..data.image_files import read_image
    from ..inverse import interpolate

    if a.num < 2:
        raise ValueError(f"--num must be >= 2 (the two ends at least), got {a.num}")
    loaded, model, shape = load_image_model(a)
    ends = [to_model(loaded, read_image(p, shape, resize=a.resize)[None].to(device_of(model))) for p in (a.a, a.b)]
    ts = torch.linspace(0, 1, a.num).tolist()
    path = loaded.decode(interpolate(PerBatch(a, model), *ends, ts, nfe=a.nfe, method=a.sampler))
    return write_results(a, path, name="frame", nrow=a.num, settings={
        **common_settings(a, loaded.meta["path"], loaded.meta["step"]), "a": a.a, "b": a.b, "sampler": a.sampler,
        "nfe": a.nfe, "t": ts})
