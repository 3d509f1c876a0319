"""One Edit request: inpainting (a painted or uploaded mask), img2img (SDEdit), upscaling and deblurring, over
`inverse.solve` and `inverse.sdedit` with the chosen method and its options."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch
from PIL import Image

from .. import __version__
from ..inverse import (METHODS, Blur, Downsample, Mask, check_latent_method, gaussian_kernel, latent_inpaint,
                       latent_solve, sdedit, solve)
from ..inverse.method import check_options as check_inverse_options
from ..sampling import METHODS as SAMPLERS, check_options
from . import limits
from .images import from_image, mask_from_paint, mask_from_upload, to_pil
from .runs import Models

TASKS = ("inpaint", "img2img", "upscale", "restore")
Progress = Callable[[int, int], None]


@contextmanager
def counted_calls(module: torch.nn.Module, total: int, progress: Progress | None) -> Iterator[None]:
    """progress(calls, total) after every forward call of module (the backbone) inside the block."""
    calls = [0]

    def hook(*_: Any) -> None:
        calls[0] += 1
        if progress is not None:
            progress(min(calls[0], total), total)

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def operator_for(task: str, shape: tuple[int, ...], *, mask: torch.Tensor | None, factor: int, blur_size: int,
                 blur_std: float) -> Any:
    """The measurement operator of a task on samples of shape (C, H, W)."""
    if task == "inpaint":
        return Mask(mask)
    if task == "upscale":
        if shape[1] % factor or shape[2] % factor:
            raise ValueError(f"upscaling factor {factor} must divide the model's image size {shape[1]}x{shape[2]}")
        return Downsample(factor)
    if blur_size % 2 == 0:
        raise ValueError(f"blur kernel size must be odd, got {blur_size}")
    return Blur(gaussian_kernel(blur_size, blur_std))


def edit(models: Models, run: str, task: Any, image: Any, *, painted: list[Any] | None = None, mask_image: Any = None,
         method: Any = "dps", sampler: Any = "ddim", nfe: Any = 50, noise_std: Any = 0.0, strength: Any = 0.6,
         factor: Any = 2, blur_size: Any = 5, blur_std: Any = 1.0, simulate: bool = True, count: Any = 1,
         seed: Any = 0, options: Any = "", progress: Progress | None = None
         ) -> tuple[Image.Image, list[Image.Image], dict[str, Any]]:
    """(the measurement y as a picture, count results, settings). With `simulate`, the upload is the clean image and
    y = A x + noise_std n is made from it; otherwise the upload is y itself (an already small or blurred picture)."""
    task = limits.choice("task", task, TASKS)
    nfe = limits.integer("denoiser calls", nfe, 1, limits.MAX_STEPS)
    noise_std = limits.number("measurement noise std", noise_std, 0, limits.MAX_NOISE_STD)
    count = limits.integer("number of results", count, 1, limits.MAX_BATCH)
    seed = limits.integer("seed", seed, 0, limits.MAX_SEED)
    opts = limits.options("method options", options)
    settings: dict[str, Any] = {"run": run, "task": task, "nfe": nfe, "count": count, "seed": seed}
    if task == "img2img":
        sampler = limits.choice("sampler", sampler, sorted(SAMPLERS))
        strength = limits.number("strength", strength, 0, 1)
        opts = check_options(sampler, opts)
        settings.update(sampler=sampler, strength=strength, options=opts)
    else:
        method = limits.choice("method", method, sorted(METHODS))
        opts = check_inverse_options(method, opts)
        if "particles" in opts:
            limits.integer("particles", opts["particles"], 1, limits.MAX_PARTICLES)
        factor = limits.integer("upscaling factor", factor, 2, 8)
        blur_size = limits.integer("blur kernel size", blur_size, 1, 15)
        blur_std = limits.number("blur std", blur_std, 0.1, 10)
        settings.update(method=method, options=opts, noise_std=noise_std, simulated_measurement=bool(simulate))
        if task == "upscale":
            settings["factor"] = factor
        if task == "restore":
            settings.update(blur_size=blur_size, blur_std=blur_std)
    gen = torch.Generator().manual_seed(seed)
    with models.use(run) as loaded:
        codec = loaded.codec  # a latent model: images are encoded, edited as latents and decoded
        if codec is not None and task in ("upscale", "restore"):  # latent DPS through the decoder, as the CLI
            check_latent_method(method, f"run {run!r}", task)
        shape = tuple(loaded.data_shape if codec is None else codec.image_shape)
        if len(shape) != 3:
            raise ValueError(f"run {run!r} models data of shape {shape}; editing needs images (C, H, W)")
        model = loaded.model
        settings.update(checkpoint=loaded.meta["path"], checkpoint_step=loaded.meta["step"])
        t0 = time.perf_counter()
        with counted_calls(model.backbone, nfe, progress):
            if task == "img2img":
                x = from_image(image, shape).repeat(count, 1, 1, 1)
                y_pic = x[0]
                gens = [torch.Generator().manual_seed(seed + i) for i in range(count)]
                z = x if codec is None else codec.encode(x)
                out = sdedit(model, z, strength, method=sampler, nfe=nfe, generator=gens, **opts)
                out = out if codec is None else codec.decode(out)
            else:
                mask = None
                if task == "inpaint":
                    mask = mask_from_upload(mask_image, shape) if mask_image is not None else \
                        mask_from_paint(painted or [], shape)
                    if bool(mask.all()):
                        raise ValueError("inpainting: paint over the region to fill in (or upload a mask, black = "
                                         "fill in); the mask is empty")
                    settings["masked_pixels"] = int((mask[0] == 0).sum())
                op = operator_for(task, shape, mask=mask, factor=factor, blur_size=blur_size, blur_std=blur_std)
                if codec is not None and task == "inpaint":  # latent replacement
                    if noise_std > 0:
                        raise ValueError("a latent model inpaints by replacing latent cells and keeps the observed "
                                         "pixels exactly; set the measurement noise std to 0")
                    x = from_image(image, shape)
                    y_pic = op(x)[0]
                    out = latent_inpaint(model, codec, x.repeat(count, 1, 1, 1), mask, method=method, nfe=nfe,
                                         generator=gen, **opts)
                    settings["latent"] = "replacement on the latent grid (approximate)"
                else:
                    if simulate or task in ("inpaint",):
                        x = from_image(image, shape)
                        y = op(x)
                        if simulate:
                            y = y + noise_std * torch.randn(y.shape, generator=gen)
                    else:  # the upload is the measurement: a small picture to upscale, a blurred one to restore
                        y = from_image(image, op.out_shape(shape))
                    y_pic = y[0] if task != "upscale" else op.adjoint(y)[0] * factor ** 2  # at the model's size
                    ys = y.repeat(count, *[1] * (y.ndim - 1))
                    if codec is None:
                        out = solve(model, ys, op, noise_std=noise_std, method=method, nfe=nfe, generator=gen, **opts)
                    else:  # upscale, restore: the measurement of the decoded image (latent DPS)
                        out = latent_solve(model, codec, ys, op, noise_std=noise_std, method=method, nfe=nfe,
                                           generator=gen, **opts)
                        settings["latent"] = "latent DPS: the measurement of the decoded image, differentiated " \
                                             "through the decoder"
        settings["seconds"] = round(time.perf_counter() - t0, 3)
    settings["torchdiffusion"] = __version__
    return to_pil(y_pic.clamp(-1, 1)), [to_pil(o) for o in out.clamp(-1, 1)], settings
