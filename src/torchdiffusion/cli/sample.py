"""`torchdiffusion sample`: draw samples from a checkpoint or a run directory; PNG tiles and an npz out."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .common import (add_device_argument, finite_float, non_negative_int, positive_int, prepare_output_file)
from .guidance_args import add_guidance_arguments, recipe_from_args, refuse_pixel_guidance
from .sample_tokens import add_token_arguments, refuse_token_flags, run_tokens
from .sampler_options import add_sampler_option_argument, sampler_options


def add_parser(sub: argparse._SubParsersAction) -> None:
    sp = sub.add_parser("sample", help="sample from a checkpoint or a run directory",
                        description="Sample with the EMA weights of a checkpoint (or a run's newest checkpoint). "
                                    "The last stdout line is JSON with nfe, seconds and the paths written. A token run (e.g. "
                                    "kjv_mdlm, kjv_ar) writes text: --num N --length L --jsonl FILE [--prefix TEXT]; an "
                                    "image token run (fashion_mnist_d3pm) a PNG grid: --tiles FILE.png; a "
                                    "class-conditional one takes --class-label, --guidance-scale and --guidance-mode.")
    sp.add_argument("path", help="checkpoint file (.safetensors) or run directory")
    sp.add_argument("--sampler", default=None, help="sampler name (see --list-samplers); default from the run config")
    sp.add_argument("--steps", type=positive_int(10_000), default=None, help="number of sampler steps")
    sp.add_argument("--num", type=positive_int(1_000_000), default=64, help="number of samples")
    sp.add_argument("--seed", type=non_negative_int, default=0, help="sample i uses seed + i")
    add_sampler_option_argument(sp)
    sp.add_argument("--cache-interval", type=positive_int(10_000), default=None, metavar="N",
                    help="step caching (DeepCache, Ma et al. 2023): a full U-Net pass every N steps, the steps in "
                         "between rerun only its shallowest level on the stored deep features (1: no caching)")
    sp.add_argument("--cache-max-sigma", type=float, default=None, metavar="SIGMA",
                    help="with --cache-interval: reuse deep features only from full passes at noise level <= SIGMA "
                         "(default: 20 sigma_data for eps and score models, whose x0 estimate multiplies a stale "
                         "feature's error by sigma; 1 sigma_data for the others); 'inf' caches at every level")
    sp.add_argument("--tiles", "--grid", dest="tiles", default=None, metavar="FILE.png",
                    help="write the samples tiled into one PNG (2-D data: a scatter plot)")
    sp.add_argument("--npz", default=None, metavar="FILE.npz", help="write arr_0 uint8 N x H x W x C")
    sp.add_argument("--raw-weights", action="store_true", help="use the raw (non-EMA) weights")
    sp.add_argument("--batch-size", type=positive_int(100_000), default=256)
    sp.add_argument("--control", default=None, metavar="IMG.png",
                    help="PATH is a ControlNet run (train-controlnet --out): steer its base with this grayscale "
                         "control image of the model's size (white = shape for a mask)")
    sp.add_argument("--control-scale", type=finite_float, default=1.0, metavar="S",
                    help="multiplies the ControlNet's residuals (0: the base model exactly; default 1)")
    add_device_argument(sp)
    sp.add_argument("--list-samplers", action="store_true", help="print the sampler table and exit")
    add_guidance_arguments(sp)
    sp.set_defaults(guidance_scale=None)  # not given: 1, or a token run's sample.guidance_scale
    add_token_arguments(sp, positive_int)
    sp.set_defaults(handler=run)


def run(a: argparse.Namespace) -> dict[str, Any]:
    from ..data import save_image_tiles, to_uint8_nhwc
    from ..devices import resolve_device
    from ..generate import generate
    from ..loading import load_run
    from ..sampling import METHODS

    if a.list_samplers:
        for name, m in METHODS.items():
            options = ", ".join(m.options) or "-"
            print(f"{name:18s} {m.kind}  order {m.order}  evals/step {m.evals_per_step}  options: {options}")
        return {}
    # outputs are checked (and their folders made) before the model is loaded and anything is drawn
    tiles = prepare_output_file(a.tiles, "--tiles") if a.tiles else None
    npz = prepare_output_file(a.npz, "--npz") if a.npz else None
    jsonl = prepare_output_file(a.jsonl, "--jsonl") if a.jsonl is not None else None
    if a.control is not None:
        from ..controlnet import load_controlled_run, read_control_png

        loaded = load_controlled_run(a.path, scale=a.control_scale, device=resolve_device(a.device))
        loaded.model.backbone.control = read_control_png(a.control, loaded.data_shape[-2:])
    else:
        loaded = load_run(a.path, raw_weights=a.raw_weights, device=resolve_device(a.device))
    if loaded.discrete:
        return run_tokens(a, loaded, jsonl, tiles)
    refuse_token_flags(a)
    a.guidance_scale = 1.0 if a.guidance_scale is None else a.guidance_scale
    model, cfg = loaded.model, loaded.config
    if cfg.loss.kind == "classifier":
        raise ValueError(f"{a.path} is a noise-conditional classifier, not a diffusion model; use it with "
                         "`sample MODEL --classifier PATH`")
    sampler = a.sampler or cfg.sample.sampler
    steps = a.steps or cfg.sample.steps
    options = sampler_options(sampler, cfg.sample.options if sampler == cfg.sample.sampler else {}, a)
    if a.cache_interval is not None:
        from ..step_cache import step_cached

        cap = "auto" if a.cache_max_sigma is None else None if a.cache_max_sigma == float("inf") else a.cache_max_sigma
        model = step_cached(model, a.cache_interval, cap)
    elif a.cache_max_sigma is not None:
        raise ValueError("--cache-max-sigma goes with --cache-interval N (step caching); give both or neither")
    refuse_pixel_guidance(a, loaded)
    guidance = recipe_from_args(a, model, a.num)
    t0 = time.perf_counter()
    x, nfe = generate(model, loaded.data_shape, a.num, sampler=sampler, steps=steps, seed=a.seed,
                      batch_size=a.batch_size, progress=sys.stderr.isatty(), guidance=guidance, **options)
    x = loaded.decode(x)  # a latent model's samples become images (time included in seconds)
    seconds = time.perf_counter() - t0
    written = {}
    if x.ndim == 4:
        x = x.clamp(-1, 1)
        if tiles:
            # all classes in turn (the default of a class-conditional model): one column per class
            k = int(getattr(model.backbone.config, "num_classes", 0))
            nrow = k if k and a.class_label in (None, "all") and a.num >= k else None
            written["tiles"] = str(save_image_tiles(x, tiles, nrow=nrow) or tiles)
        array = to_uint8_nhwc(x)
    else:
        from ..train.visual import save_scatter
        if tiles:
            written["tiles"] = str(save_scatter(x, tiles))
        array = x.numpy()
    if npz:
        with open(npz, "wb") as f:  # np.savez on a name would append ".npz"; the file written is the one asked for
            np.savez(f, arr_0=array)
        written["npz"] = str(npz)
    return {"checkpoint": loaded.meta["path"], "step": loaded.meta["step"], "sampler": sampler, "steps": steps,
            "nfe": nfe, "num": a.num, "seconds": round(seconds, 3), "options": options,
            **({"cache_interval": a.cache_interval, "cache_max_sigma": cache_cap(model)} if a.cache_interval else {}),
            **written}


def cache_cap(model: Any) -> float | None:
    """The step-cached model's max_sigma for the report (None: every level)."""
    cap = getattr(model, "max_sigma", None)
    return None if cap is None or cap == float("inf") else cap
