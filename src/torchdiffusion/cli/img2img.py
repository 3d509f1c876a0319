"""`torchdiffusion img2img`: SDEdit -- noise an image to a strength, then sample back with any sampler."""

from __future__ import annotations

import argparse
from typing import Any

from .common import finite_float, positive_int
from .edit_common import (IMAGE_HELP, add_model_arguments, common_settings, device_of, generators, guided,
                          load_image_model, to_model, write_results)
from .sampler_options import add_sampler_option_argument, sampler_options


def add_parser(sub: argparse._SubParsersAction) -> None:
    sp = sub.add_parser("img2img", help="SDEdit: turn an image (a sketch, a photo) into a sample near it",
                        description="SDEdit (Meng et al. 2022): the image is noised to the level at --strength "
                                    "(Karras ramp: 0 = the image back, 1 = pure noise, a fresh sample) and sampled "
                                    "back to 0 with --sampler in at most --nfe calls. The last stdout line is JSON.")
    sp.add_argument("--image", required=True, metavar="IMG.png", help=IMAGE_HELP)
    sp.add_argument("--strength", type=finite_float, required=True, metavar="S",
                    help="how much to change, in (0, 1]: the fraction of a sampling run redone (0.3 keeps the "
                         "layout, 0.7 keeps little)")
    sp.add_argument("--sampler", default="ddim", help="any sampler of `torchdiffusion sample --list-samplers`")
    sp.add_argument("--nfe", type=positive_int(100_000), default=50, help="denoiser calls per result (budget)")
    add_sampler_option_argument(sp)
    add_model_arguments(sp)
    sp.set_defaults(handler=run)


def run(a: argparse.Namespace) -> dict[str, Any]:
    from ..data.image_files import read_image
    from ..inverse import sdedit

    if not 0 < a.strength <= 1:
        raise ValueError(f"--strength must lie in (0, 1] (0 would return the image unchanged), got {a.strength}")
    options = sampler_options(a.sampler, {}, a)
    loaded, model, shape = load_image_model(a)
    x0 = read_image(a.image, shape, resize=a.resize)[None]
    z0 = to_model(loaded, x0.to(device_of(model)))  # a latent model edits the image's latent (then decodes)
    rows = z0.expand(a.num, *z0.shape[1:]).contiguous()
    edited = loaded.decode(sdedit(guided(a, model, a.num), rows, a.strength, method=a.sampler, nfe=a.nfe,
                                  generator=generators(a.seed, a.num), **options))
    return write_results(a, edited, first=x0, name="edited", settings={
        **common_settings(a, loaded.meta["path"], loaded.meta["step"]), "image": a.image, "strength": a.strength,
        "sampler": a.sampler, "nfe": a.nfe, "options": options})
