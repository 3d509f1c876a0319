"""`torchdiffusion invert`: DDIM (or Heun) inversion of an image to its noise, with the reconstruction error."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from .common import positive_int, prepare_output_file
from .edit_common import IMAGE_HELP, add_model_arguments, common_settings, device_of, load_image_model, PerBatch, \
    to_model, write_results


def add_parser(sub: argparse._SubParsersAction) -> None:
    sp = sub.add_parser("invert", help="invert an image to its noise (DDIM inversion) and reconstruct it",
                        description="Deterministic inversion (Song et al. 2021): the probability-flow ODE run up "
                                    "from the image to sigma_max with DDIM's (or Heun's) step, then back down; "
                                    "writes the noise (npz, arr_0 of shape (1, C, H, W) in VE units) and the "
                                    "reconstruction, and reports its RMS error in [-1, 1] units. Deterministic: "
                                    "no seed.")
    sp.add_argument("--image", required=True, metavar="IMG.png", help=IMAGE_HELP)
    sp.add_argument("--sampler", default="ddim", choices=["ddim", "heun"], help="the deterministic sampler inverted")
    sp.add_argument("--nfe", type=positive_int(100_000), default=50,
                    help="denoiser calls of the inversion (the way back: one more for DDIM, 2 per step + 1 for Heun)")
    sp.add_argument("--noise-out", metavar="NOISE.npz", default=None, help="where to write the noise (default "
                                                                           "DIR/noise.npz)")
    add_model_arguments(sp, seeded=False)
    sp.set_defaults(handler=run)


def run(a: argparse.Namespace) -> dict[str, Any]:
    from ..data.image_files import read_image
    from ..inverse import ddim_invert

    noise_out = prepare_output_file(a.noise_out or str(Path(a.out) / "noise.npz"), "--noise-out")
    loaded, model, shape = load_image_model(a)
    x0 = read_image(a.image, shape, resize=a.resize)[None]
    z0 = to_model(loaded, x0.to(device_of(model)))  # a latent model inverts the image's latent
    inv = ddim_invert(PerBatch(a, model), z0, nfe=a.nfe, method=a.sampler)
    with open(noise_out, "wb") as f:  # np.savez on a name would append ".npz"
        np.savez(f, arr_0=inv.noise.cpu().numpy())
    reconstruction = loaded.decode(inv.reconstruction).cpu()
    latent = {}
    if loaded.codec is not None:  # the pixel error includes the autoencoder's own: report both parts
        latent = {"latent_rms_error": float(inv.error[0]),
                  "autoencoder_rms_error": float((loaded.decode(z0).cpu() - x0).pow(2).mean().sqrt())}
    return write_results(a, reconstruction, first=x0, name="reconstruction", settings={
        **common_settings(a, loaded.meta["path"], loaded.meta["step"]), "image": a.image, "sampler": a.sampler,
        "nfe": a.nfe, "noise": str(noise_out), "rms_error": float(inv.error[0]) if loaded.codec is None
        else float((reconstruction - x0).pow(2).mean().sqrt()),
        "max_abs_error": float((reconstruction - x0).abs().max()), **latent})
