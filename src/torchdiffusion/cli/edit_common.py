"""What the editing commands (inpaint, img2img, restore, upscale, invert, interpolate) share: the model and image
arguments, the guided denoiser, per-output seeds, and the outputs (one PNG per result, a tile grid, settings.json)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import torch

from .common import add_device_argument, non_negative_int, out_dir, positive_int, prepare_output_file
from .guidance_args import add_guidance_arguments, recipe_from_args, refuse_pixel_guidance
from .sampler_options import parse_options

Tensor = torch.Tensor
IMAGE_HELP = ("a PNG (any Pillow-readable image); converted to the model's channels (grey <-> RGB) and scaled "
              "like the training data (8-bit u -> u / 127.5 - 1)")


def add_model_arguments(sp: argparse.ArgumentParser, *, seeded: bool = True, num_help: str | None = None,
                        run_help: str | None = None) -> None:
    """RUN (optional where run_help says how else the model is given), --out, --resize, --seed and --num (where
    outputs are random), --device, --raw-weights, guidance."""
    sp.add_argument("path", metavar="RUN", nargs=None if run_help is None else "?", default=None,
                    help=run_help or "run directory or checkpoint (.safetensors) of an image model")
    sp.add_argument("--out", type=out_dir, required=True, metavar="DIR",
                    help="output directory: one PNG per result, grid.png (the input first), settings.json")
    sp.add_argument("--resize", action="store_true",
                    help="resize input images to the model's size (bicubic; masks nearest) instead of refusing them")
    if seeded:
        sp.add_argument("--seed", type=non_negative_int, default=0, help="result i uses seed + i (its own stream)")
    if num_help is not None or seeded:
        sp.add_argument("--num", type=positive_int(10_000), default=4, help=num_help or "number of results")
    sp.add_argument("--raw-weights", action="store_true", help="use the raw (non-EMA) weights")
    add_device_argument(sp)
    add_guidance_arguments(sp)


def add_solve_arguments(sp: argparse.ArgumentParser, default_method: str, nfe: int = 100,
                        latent_method: str | None = None) -> None:
    """--method (a posterior sampler of torchdiffusion.inverse), --nfe, --option KEY=VALUE. With latent_method, the
    default method depends on the model (`load_image_model` resolves it): default_method on pixel models,
    latent_method on latent ones."""
    default = default_method if latent_method is None else None
    where = "" if latent_method is None else f" (default {default_method}; {latent_method} on a latent model, the " \
                                             f"only method a measurement of the decoded image takes)"
    sp.add_argument("--method", default=default,
                    help=f"posterior sampler: replacement, repaint, dps, pigdm, ddrm or smc{where} (docs/inverse.md)")
    sp.set_defaults(pixel_method=default_method, latent_method=latent_method)
    sp.add_argument("--nfe", type=positive_int(100_000), default=nfe,
                    help="denoiser calls per result (a particle method's call on all its particles counts once)")
    sp.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="a method option, e.g. --option zeta=0.5 (dps), --option particles=16 (smc), "
                         "--option gamma=0.1 (dps on a latent model: the gluing weight) (repeatable)")


def load_image_model(a: argparse.Namespace, *, measured_task: str | None = None
                     ) -> tuple[Any, Any, tuple[int, int, int]]:
    """(loaded run, its model, image shape (C, H, W)): the output directory checked first, then the model. A latent
    model's image shape is its autoencoder's (`loaded.codec` encodes and decodes). measured_task names a command
    that samples the posterior given a pixel measurement: --method left out becomes the model's default
    (a.pixel_method or a.latent_method), and a method a latent model cannot take is refused (ValueError)."""
    from ..data.image_files import check_image_shape
    from ..devices import resolve_device
    from ..loading import load_run

    prepare_output_file(str(Path(a.out) / "settings.json"), "--out")
    loaded = load_run(a.path, raw_weights=a.raw_weights, device=resolve_device(a.device))
    if loaded.config.loss.kind == "classifier":
        raise ValueError(f"{a.path} is a noise-conditional classifier, not a diffusion model")
    if measured_task is not None and getattr(a, "method", None) is None:
        a.method = a.pixel_method if loaded.codec is None else a.latent_method
    if loaded.codec is not None:
        refuse_pixel_guidance(a, loaded)
        if measured_task is not None:
            from ..inverse import check_latent_method

            check_latent_method(a.method, a.path, measured_task)
        return loaded, loaded.model, check_image_shape(tuple(loaded.codec.image_shape))
    return loaded, loaded.model, check_image_shape(tuple(loaded.data_shape))


def to_model(loaded: Any, x: Tensor) -> Tensor:
    """Images (N, C, H, W) as the model's data: a latent model's scaled latents, pixel images unchanged."""
    return x if loaded.codec is None else loaded.codec.encode(x)


def device_of(model: Any) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def guided(a: argparse.Namespace, model: Any, num: int, particles: int = 1) -> Any:
    """The denoiser with the guidance flags' conditions for num results (each repeated per particle)."""
    recipe = recipe_from_args(a, model, num)
    if particles > 1:
        recipe = recipe.repeat_rows(particles)
    return recipe.denoiser(model, slice(0, num * particles))


class PerBatch:
    """A guided denoiser for batches of any size, every row under the same conditions (the flags' first row):
    deterministic edits run batches of 1, 2 and num rows through one model."""

    def __init__(self, a: argparse.Namespace, model: Any):
        self._a, self._model, self._cache = a, model, {}

    def _for(self, rows: int) -> Any:
        if rows not in self._cache:
            self._cache[rows] = guided(self._a, self._model, rows)
        return self._cache[rows]

    def __call__(self, x: Tensor, sigma: Tensor, **cond: Any) -> Tensor:
        return self._for(len(x))(x, sigma, **cond)

    def __getattr__(self, name: str) -> Any:  # sigma_min, sigma_max, ... of the wrapped denoiser
        return getattr(self._for(1), name)


def generators(seed: int, num: int) -> list[torch.Generator]:
    from ..generate import sample_generators

    return sample_generators(seed, num)


def method_options(method: str, items: list[str]) -> dict[str, Any]:
    """--option values checked against the inverse method's options."""
    from ..inverse.method import check_options

    options = parse_options(items)
    for key, value in options.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"option {key} must be a finite number, got {value}")
    return check_options(method, options)


def write_results(a: argparse.Namespace, results: Tensor, *, first: Tensor | None = None, name: str = "result",
                  settings: dict[str, Any], nrow: int | None = None) -> dict[str, Any]:
    """results (N, C, H, W) as DIR/<name>-000.png ..., grid.png (`first`, e.g. the input, then the results) and
    settings.json (the command line's exact settings with what was written). Returns the settings."""
    from ..data import save_image_tiles
    from ..data.image_files import write_image

    out = Path(a.out)
    results = results.detach().float().cpu().clamp(-1, 1)
    files = [str(write_image(r, out / f"{name}-{i:03d}.png")) for i, r in enumerate(results)]
    tiles = results if first is None else torch.cat([first.detach().float().cpu().clamp(-1, 1), results])
    grid = save_image_tiles(tiles, out / "grid.png", nrow=nrow)
    settings = {"command": a.command, "run": str(a.path), **settings, "files": files, "grid": str(grid)}
    (out / "settings.json").write_text(json.dumps(settings, indent=2, default=str) + "\n")
    return {**settings, "settings": str(out / "settings.json")}


def guidance_settings(a: argparse.Namespace) -> dict[str, Any]:
    """The guidance flags as given, for settings.json."""
    keys = ("class_label", "prompt", "guidance_scale", "negative_class", "negative_prompt", "guidance_rescale",
            "guidance_interval", "threshold", "classifier", "classifier_scale")
    return {k: getattr(a, k) for k in keys}


def common_settings(a: argparse.Namespace, checkpoint: str, step: int) -> dict[str, Any]:
    """The settings every editing command records."""
    seeded = {k: getattr(a, k) for k in ("seed", "num") if hasattr(a, k)}
    return {"checkpoint": checkpoint, "step": step, "resize": a.resize, "raw_weights": a.raw_weights, **seeded,
            "guidance": guidance_settings(a)}


def posterior_draws(a: argparse.Namespace, model: Any, operator: Any, y: Tensor, noise_std: float,
                    codec: Any = None) -> tuple[Tensor, dict[str, Any]]:
    """a.num posterior draws (seed + i each) given one measurement y (1, ...) by `inverse.solve`, and their
    settings; with a latent model's codec, y measures the decoded image (`inverse.latent_solve`: latent DPS) and
    the draws are decoded images."""
    from ..inverse import METHODS, latent_solve, solve

    m = METHODS.lookup(a.method)
    options = method_options(a.method, a.option)
    particles = options.get("particles", m.defaults().get("particles", 1)) if m.particles else 1
    ys = y.to(device_of(model)).expand(a.num, *y.shape[1:]).contiguous()
    denoiser, gens = guided(a, model, a.num, particles), generators(a.seed, a.num)
    settings = {"method": a.method, "nfe": a.nfe, "options": options, "noise_std": noise_std}
    if codec is None:
        draws = solve(denoiser, ys, operator, noise_std=noise_std, method=a.method, nfe=a.nfe, generator=gens,
                      **options)
        return draws, settings
    draws = latent_solve(denoiser, codec, ys, operator, noise_std=noise_std, method=a.method, nfe=a.nfe,
                         generator=gens, **options)
    return draws, {**settings, "latent": "latent DPS: the measurement of the decoded image, differentiated "
                                        "through the decoder"}
