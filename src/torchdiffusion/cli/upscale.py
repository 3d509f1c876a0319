"""`torchdiffusion upscale`: super-resolution of a low-resolution image to the model's size.

Two routes: posterior sampling with an unconditional model RUN (`inverse.solve` with `Downsample(factor)`: the
result averages back to the input over factor x factor blocks), or a conditional super-resolution model given by
--sr-run (SR3, `inverse.superres.upscale`: the low-resolution image is the model's extra input, at the size it was
trained on). Both take the same image checks and write the same outputs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .common import finite_float, non_negative_float, positive_int, prepare_output_file
from .edit_common import (IMAGE_HELP, add_model_arguments, add_solve_arguments, common_settings, load_image_model,
                          posterior_draws, write_results)

Tensor = torch.Tensor
DEFAULT_NFE = 100  # of the solve route


def add_parser(sub: argparse._SubParsersAction) -> None:
    sp = sub.add_parser("upscale", help="super-resolve a low-resolution image to the model's size",
                        description="Super-resolution: posterior draws of a model-size image whose factor x factor "
                                    "block averages are the low-resolution input (torchdiffusion.inverse.solve with "
                                    "Downsample over the image model RUN), or, with --sr-run, samples of a "
                                    "conditional super-resolution model given the input (SR3; e.g. a run of "
                                    "fashion_mnist_sr7 takes 7x7 images to 28x28). grid.png shows the input "
                                    "(nearest), bicubic upsampling, then the results. The last stdout line is JSON.")
    sp.add_argument("--image", required=True, metavar="LOWRES.png",
                    help=IMAGE_HELP + "; its size times --factor is the model's (with --sr-run: the SR model's "
                                      "low-resolution size)")
    sp.add_argument("--factor", type=positive_int(64), default=None,
                    help="upscaling factor (default: the model's size over the image's, when a whole number)")
    sp.add_argument("--noise-std", type=finite_float, default=0.0,
                    help="std of noise on the low-resolution pixels in [-1, 1] units (0: the block averages kept; "
                         "solve route only)")
    add_solve_arguments(sp, "ddrm", DEFAULT_NFE, latent_method="dps")
    sp.set_defaults(nfe=None)  # given or not decides the SR route's budget; the solve route's default is DEFAULT_NFE
    g = sp.add_argument_group("conditional super-resolution model (SR3)")
    g.add_argument("--sr-run", default=None, metavar="SR_RUN",
                   help="a super-resolution run (config with model.params.low_res_size) to upscale with, instead "
                        "of posterior sampling with RUN; --method/--option/--noise-std do not apply, --nfe caps "
                        "its sampler's denoiser calls")
    g.add_argument("--sampler", default=None, help="the SR model's sampler (default: the SR run's sample.sampler)")
    g.add_argument("--steps", type=positive_int(10_000), default=None,
                   help="the SR model's sampler steps (default: the SR run's sample.steps, unless --nfe is given)")
    g.add_argument("--aug-sigma", type=non_negative_float, default=0.0, metavar="S",
                   help="noise-conditioning augmentation level the input is noised at and the SR model told "
                        "(Ho et al. 2021; default 0: a clean input)")
    add_model_arguments(sp, run_help="run directory or checkpoint of an unconditional image model (the solve route; "
                                     "leave out with --sr-run)")
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


def by_solve(a: argparse.Namespace, loaded: Any, low: Tensor, factor: int) -> tuple[Tensor, dict[str, Any]]:
    """Posterior draws given the low-resolution image as the block averages of the result (of the decoded image,
    on a latent model)."""
    from ..inverse import Downsample

    return posterior_draws(a, loaded.model, Downsample(factor), low, a.noise_std, loaded.codec)


GUIDANCE_DEFAULTS = {"class_label": None, "prompt": None, "guidance_scale": 1.0, "negative_class": None,
                     "negative_prompt": None, "guidance_rescale": 0.0, "guidance_interval": None, "threshold": None,
                     "classifier": None, "classifier_scale": 1.0}


def check_sr_flags(a: argparse.Namespace) -> None:
    """With --sr-run: no RUN, and none of the solve route's flags (they would be silently ignored)."""
    if a.path is not None:
        raise ValueError(f"give RUN (posterior sampling with an unconditional model) or --sr-run (a super-resolution "
                         f"model), not both: got RUN {a.path} and --sr-run {a.sr_run}")
    given = [f"--{k}" for k, bad in (("method", a.method is not None), ("option", bool(a.option)),
                                     ("noise-std", a.noise_std != 0)) if bad]
    given += [f"--{k.replace('_', '-')}" for k, v in GUIDANCE_DEFAULTS.items() if getattr(a, k) != v]
    if given:
        raise ValueError(f"{', '.join(given)} apply to posterior sampling with RUN, not to --sr-run (the SR model "
                         f"is sampled as trained: choose --sampler, --steps or --nfe, --aug-sigma)")


def by_sr_model(a: argparse.Namespace) -> tuple[Any, Tensor, Tensor, int, dict[str, Any]]:
    """(loaded SR run, the input (1, C, s, s), a.num SR3 samples, factor, settings) by `inverse.superres.upscale`,
    sample i seeded seed + i."""
    from ..data.image_files import check_image_shape, image_size, read_image
    from ..devices import resolve_device
    from ..inverse.superres import low_res_size, upscale
    from ..loading import load_run

    check_sr_flags(a)
    loaded = load_run(a.sr_run, raw_weights=a.raw_weights, device=resolve_device(a.device))
    if loaded.config.loss.kind == "classifier":
        raise ValueError(f"--sr-run {a.sr_run} is a noise-conditional classifier, not a diffusion model")
    try:
        size = low_res_size(loaded.model)
    except ValueError as e:
        raise ValueError(f"--sr-run {a.sr_run}: {e}") from None
    C, H, W = check_image_shape(tuple(loaded.data_shape))
    if a.factor is not None and (H % a.factor or H // a.factor != size):
        raise ValueError(f"--factor {a.factor} does not take this SR model's {size}x{size} input to its {H}x{W} "
                         f"output (its factor is {H // size}); leave --factor out")
    if not a.resize:
        h, w = image_size(a.image)
        if (h, w) != (size, size):
            raise ValueError(f"image {a.image} is {h}x{w}, but the SR model {a.sr_run} takes {size}x{size} inputs "
                             f"(to {H}x{W}); give a {size}x{size} image or --resize")
    low = read_image(a.image, (C, size, size), resize=a.resize)[None]
    if a.steps is not None and a.nfe is not None:
        raise ValueError(f"give --steps or --nfe for the SR model's sampler, not both (got {a.steps} and {a.nfe})")
    sampler = a.sampler or loaded.config.sample.sampler
    steps = a.steps or (None if a.nfe is not None else loaded.config.sample.steps)
    x = upscale(loaded.model, low.expand(a.num, -1, -1, -1).contiguous(), sampler=sampler, steps=steps or 20,
                nfe=a.nfe if steps is None else None, aug_sigma=a.aug_sigma, seed=a.seed)
    settings = {"route": "sr_model", "sr_run": loaded.meta["path"], "sampler": sampler, "steps": steps,
                "nfe": a.nfe, "aug_sigma": a.aug_sigma}
    return loaded, low, x, H // size, settings


def run(a: argparse.Namespace) -> dict[str, Any]:
    from ..data.image_files import read_image

    if not a.noise_std >= 0:
        raise ValueError(f"--noise-std must be >= 0, got {a.noise_std}")
    if a.sr_run is not None:
        prepare_output_file(str(Path(a.out) / "settings.json"), "--out")
        loaded, low, draws, factor, settings = by_sr_model(a)
        a.path = a.sr_run  # the run that drew the results, for settings.json
    else:
        if a.path is None:
            raise ValueError("give RUN (an unconditional image model, for posterior sampling) or --sr-run SR_RUN "
                             "(a super-resolution model)")
        if a.sampler is not None or a.steps is not None or a.aug_sigma != 0:
            raise ValueError("--sampler, --steps and --aug-sigma apply to --sr-run; posterior sampling with RUN "
                             "takes --method, --nfe and --option")
        a.nfe = DEFAULT_NFE if a.nfe is None else a.nfe
        loaded, _, (C, H, W) = load_image_model(a, measured_task="upscale")
        factor = factor_for(a, (H, W))
        low = read_image(a.image, (C, H // factor, W // factor), resize=a.resize)[None]
        draws, settings = by_solve(a, loaded, low, factor)
        settings = {"route": "solve", **settings}
    H, W = draws.shape[-2:]
    first = torch.cat([F.interpolate(low.to(draws), size=(H, W), mode="nearest"),
                       F.interpolate(low.to(draws), size=(H, W), mode="bicubic", align_corners=False)])
    return write_results(a, draws, first=first, name="upscaled", settings={
        **common_settings(a, loaded.meta["path"], loaded.meta["step"]), "image": a.image, "factor": factor,
        **settings})
