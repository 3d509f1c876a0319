"""`torchdiffusion upscale`: super-resolution of a low-resolution image to the model's size.

The route taken is posterior sampling (`inverse.solve` with `Downsample(factor)`: the result averages back to the
input over factor x factor blocks). A conditional super-resolution model (SR3) is a second route that plugs in
beside `by_solve`, chosen by its own option (e.g. `--sr-run`), with the same input checks and outputs.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
import torch.nn.functional as F

from .common import finite_float, positive_int
from .edit_common import (IMAGE_HELP, add_model_arguments, add_solve_arguments, common_settings, load_image_model,
                          posterior_draws, write_results)

Tensor = torch.Tensor


def add_parser(sub: argparse._SubParsersAction) -> None:
    sp = sub.add_parser("upscale", help="super-resolve a low-resolution image to the model's size",
                        description="Super-resolution: posterior draws of a model-size image whose factor x factor "
                                    "block averages are the low-resolution input (torchdiffusion.inverse.solve with "
                                    "Downsample). grid.png shows the input (nearest), bicubic upsampling, then the "
                                    "results. The last stdout line is JSON.")
    sp.add_argument("--image", required=True, metavar="LOWRES.png",
                    help=IMAGE_HELP + "; its size times --factor is the model's")
    sp.add_argument("--factor", type=positive_int(64), default=None,
                    help="upscaling factor (default: the model's size over the image's, when a whole number)")
    sp.add_argument("--noise-std", type=finite_float, default=0.0,
                    help="std of noise on the low-resolution pixels in [-1, 1] units (0: the block averages kept)")
    add_solve_arguments(sp, "ddrm")
    add_model_arguments(sp)
    sp.set_defaults(handler=run)


def factor_for(a: argparse.Namespace, size: tuple[int, int]) -> int:
    """--factor, or the one the image's size implies; checked to divide the model's size."""
    from ..data.image_files import image_size

    H, W = size
    f = a.factor
    if f is None:
        h, w = image_size(a.image)
        if h == 0 or H % h or W % w or H // h != W // w:
            raise ValueError(f"image {a.image} is {h}x{w}, not the model's {H}x{W} divided by a whole factor; give "
                             f"--factor (and --resize to resize the image to the model's size / factor)")
        f = H // h
    if H % f or W % f:
        raise ValueError(f"--factor {f} does not divide the model's image size {H}x{W}")
    return f


def by_solve(a: argparse.Namespace, model: Any, low: Tensor, factor: int) -> tuple[Tensor, dict[str, Any]]:
    """Posterior draws given the low-resolution image as the block averages of the result."""
    from ..inverse import Downsample

    return posterior_draws(a, model, Downsample(factor), low, a.noise_std)


def run(a: argparse.Namespace) -> dict[str, Any]:
    from ..data.image_files import read_image

    if not a.noise_std >= 0:
        raise ValueError(f"--noise-std must be >= 0, got {a.noise_std}")
    loaded, model, (C, H, W) = load_image_model(a, pixel_task="upscale")
    factor = factor_for(a, (H, W))
    low = read_image(a.image, (C, H // factor, W // factor), resize=a.resize)[None]
    draws, settings = by_solve(a, model, low, factor)
    first = torch.cat([F.interpolate(low, size=(H, W), mode="nearest"),
                       F.interpolate(low, size=(H, W), mode="bicubic", align_corners=False)])
    return write_results(a, draws, first=first, name="upscaled", settings={
        **common_settings(a, loaded.meta["path"], loaded.meta["step"]), "image": a.image, "factor": factor,
        "route": "solve", **settings})
