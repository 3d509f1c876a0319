"""`torchdiffusion restore`: undo a known linear degradation (blur, downsampling, a mask, noise) by posterior
sampling (on a latent model: latent DPS, the measurement of the decoded image differentiated through the decoder)."""

from __future__ import annotations

import argparse
from typing import Any

import torch
import torch.nn.functional as F

from .common import finite_float
from .edit_common import (IMAGE_HELP, add_model_arguments, add_solve_arguments, common_settings, generators,
                          load_image_model, posterior_draws, write_results)

Tensor = torch.Tensor


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..inverse.specs import OPERATORS

    kinds = "; ".join(f"{k}: {v}" for k, v in OPERATORS.items())
    sp = sub.add_parser("restore", help="deblur / denoise / super-resolve an image with a known operator",
                        description="Posterior draws of x0 given y = A x0 + noise_std n for a known linear A, by "
                                    "torchdiffusion.inverse.solve. The image is the measurement y (for "
                                    "downsample:F an image F times smaller than the model's), or with --simulate "
                                    "a clean image that is degraded first. The last stdout line is JSON.")
    sp.add_argument("--image", required=True, metavar="IMG.png", help=IMAGE_HELP)
    sp.add_argument("--operator", required=True, metavar="SPEC", help=f"the degradation A: {kinds}")
    sp.add_argument("--noise-std", type=finite_float, default=0.0,
                    help="std of the measurement noise in [-1, 1] units (0: noise-free)")
    sp.add_argument("--simulate", action="store_true",
                    help="the image is clean: degrade it (A x + noise_std n, seeded by --seed) and restore that")
    add_solve_arguments(sp, "ddrm", latent_method="dps")
    add_model_arguments(sp)
    sp.set_defaults(handler=run)


def shown(y: Tensor, size: tuple[int, int]) -> Tensor:
    """A measurement image (1, C, h, w) at the model's size (nearest neighbour) for the grid."""
    return y if tuple(y.shape[-2:]) == tuple(size) else F.interpolate(y, size=size, mode="nearest")


def measurement(a: argparse.Namespace, op: Any, shape: tuple[int, int, int]) -> Tensor:
    """y (1, *out_shape): the image itself, or with --simulate the image degraded (seeded by --seed)."""
    from ..data.image_files import read_image
    from ..rng import randn

    if a.simulate:
        y = op(read_image(a.image, shape, resize=a.resize)[None])
        return y + a.noise_std * randn(tuple(y.shape), generators(a.seed, 1)[0])
    out_shape = op.out_shape(shape)
    if len(out_shape) != 3:
        raise ValueError(f"--operator {a.operator}: its measurement (shape {out_shape}) is not an image")
    return read_image(a.image, out_shape, resize=a.resize)[None]


def run(a: argparse.Namespace) -> dict[str, Any]:
    from ..inverse import operator_from_spec

    if not a.noise_std >= 0:
        raise ValueError(f"--noise-std must be >= 0, got {a.noise_std}")
    loaded, model, shape = load_image_model(a, measured_task="restore")
    op = operator_from_spec(a.operator, shape)
    y = measurement(a, op, shape)
    draws, settings = posterior_draws(a, model, op, y, a.noise_std, loaded.codec)
    return write_results(a, draws, first=shown(y, shape[1:]), name="restored", settings={
        **common_settings(a, loaded.meta["path"], loaded.meta["step"]), "image": a.image, "operator": a.operator,
        "simulate": a.simulate, **settings})
