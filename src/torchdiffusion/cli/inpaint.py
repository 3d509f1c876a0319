"""`torchdiffusion inpaint`: fill the missing part of an image (a mask file or preset) by posterior sampling."""

from __future__ import annotations

import argparse
from typing import Any

from .common import finite_float
from .edit_common import (IMAGE_HELP, add_model_arguments, add_solve_arguments, common_settings, device_of,
                          generators, guided, load_image_model, method_options, posterior_draws, write_results)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..inverse.specs import MASK_PRESETS

    presets = "; ".join(f"{k}: {v}" for k, v in MASK_PRESETS.items())
    sp = sub.add_parser("inpaint", help="fill missing pixels of an image (PNG in, PNGs out)",
                        description="Inpainting: posterior draws of the image given its observed pixels (y = mask * "
                                    "x0), by torchdiffusion.inverse.solve. The mask is WHITE where a pixel is "
                                    "observed (kept) and BLACK where it is missing (to fill). The last stdout line "
                                    "is JSON with the files written.")
    sp.add_argument("--image", required=True, metavar="IMG.png", help=IMAGE_HELP)
    where = sp.add_mutually_exclusive_group(required=True)
    where.add_argument("--mask", metavar="MASK.png",
                       help="white (grey >= 128) = observed / kept, black = missing / filled; the image's size")
    where.add_argument("--mask-preset", metavar="NAME", help=f"a built-in mask, named by what is MISSING: {presets}")
    sp.add_argument("--noise-std", type=finite_float, default=0.0,
                    help="std of the noise on the observed pixels, in [-1, 1] units (default 0: kept exactly)")
    add_solve_arguments(sp, "repaint")
    add_model_arguments(sp)
    sp.set_defaults(handler=run)


def latent_draws(a: argparse.Namespace, loaded: Any, x: Any, mask: Any) -> tuple[Any, dict[str, Any]]:
    """A latent model's draws by latent replacement (inverse.latent_inpaint: approximate, docs/latent.md)."""
    from ..inverse import METHODS, latent_inpaint, latent_mask

    if a.noise_std > 0:
        raise ValueError(f"--noise-std {a.noise_std}: {a.path} is a latent diffusion model, inpainted by replacing "
                         f"latent cells, which keeps the observed pixels exactly; a noisy measurement of pixels has "
                         f"no counterpart on the latent grid (use a pixel-space model, or --noise-std 0)")
    options = method_options(a.method, a.option)
    m = METHODS.lookup(a.method)
    particles = options.get("particles", m.defaults().get("particles", 1)) if m.particles else 1
    dev = device_of(loaded.model)
    rows = x.to(dev).expand(a.num, *x.shape[1:]).contiguous()
    draws = latent_inpaint(guided(a, loaded.model, a.num, particles), loaded.codec, rows, mask.to(dev), method=a.method,
                           nfe=a.nfe, generator=generators(a.seed, a.num), **options)
    cells = latent_mask(mask, tuple(loaded.data_shape))
    return draws, {"method": a.method, "nfe": a.nfe, "options": options, "noise_std": 0.0,
                   "latent": "replacement on the latent grid (approximate)",
                   "observed_latent_fraction": float(cells.mean())}


def run(a: argparse.Namespace) -> dict[str, Any]:
    from ..data.image_files import read_image, read_mask
    from ..inverse import Mask, mask_preset

    if not a.noise_std >= 0:
        raise ValueError(f"--noise-std must be >= 0, got {a.noise_std}")
    loaded, model, shape = load_image_model(a)
    x = read_image(a.image, shape, resize=a.resize)[None]  # (1, C, H, W)
    mask = read_mask(a.mask, shape, resize=a.resize) if a.mask else mask_preset(a.mask_preset, shape)
    op = Mask(mask)
    if loaded.codec is not None:
        draws, settings = latent_draws(a, loaded, x, mask)
    else:
        draws, settings = posterior_draws(a, model, op, op(x), a.noise_std)
    shown = op(x) - (1 - mask)  # the input with its missing pixels black
    return write_results(a, draws, first=shown, name="inpainted", settings={
        **common_settings(a, loaded.meta["path"], loaded.meta["step"]), "image": a.image, "mask": a.mask,
        "mask_preset": a.mask_preset, "observed_fraction": float(mask.mean()), **settings})
