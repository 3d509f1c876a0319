"""One Generate request: checked fields -> samples of a run's model, and the exact settings that reproduce them."""

from __future__ import annotations

import time
from typing import Any, Callable

from PIL import Image

from .. import __version__
from ..generate import generate
from ..sampling import METHODS, check_options
from . import limits
from .conditions import recipe
from .images import to_pil
from .runs import Models

Progress = Callable[[int, int], None]  # (steps done, steps in all)


def draw(models: Models, run: str, *, sampler: Any, steps: Any, seed: Any, batch: Any, options: Any = "",
         labels: Any = "all", prompt: Any = "", negative_prompt: Any = "", scale: Any = 1.0, rescale: Any = 0.0,
         interval_lo: Any = None, interval_hi: Any = None, progress: Progress | None = None
         ) -> tuple[list[Image.Image], dict[str, Any]]:
    """(batch images, settings). Sample i uses seed + i, so a seed gives the same images in any batch size."""
    sampler = limits.choice("sampler", sampler, sorted(METHODS))
    steps = limits.integer("steps", steps, 1, limits.MAX_STEPS)
    seed = limits.integer("seed", seed, 0, limits.MAX_SEED)
    batch = limits.integer("batch size", batch, 1, limits.MAX_BATCH)
    opts = check_options(sampler, limits.options("sampler options", options))
    with models.use(run) as loaded:
        shape = loaded.data_shape
        if len(shape) != 3:
            raise ValueError(f"run {run!r} models {len(shape)}-D data of shape {tuple(shape)}; the page shows images "
                             f"(C, H, W) only")
        guidance, conds = recipe(loaded.model, batch, labels=labels, prompt=prompt, negative_prompt=negative_prompt,
                                 scale=scale, rescale=rescale, interval_lo=interval_lo, interval_hi=interval_hi)
        done = [0]

        def step(_: dict[str, Any]) -> None:
            done[0] += 1
            if progress is not None:
                progress(min(done[0], steps), steps)

        t0 = time.perf_counter()
        x, nfe = generate(loaded.model, tuple(shape), batch, sampler=sampler, steps=steps, seed=seed,
                          batch_size=batch, guidance=guidance, callback=step, **opts)
        x = loaded.decode(x)  # a latent model's latents decoded to images (timed as sampling, as `sample` does)
        seconds = time.perf_counter() - t0
        settings = {"run": run, "checkpoint": loaded.meta["path"], "checkpoint_step": loaded.meta["step"],
                    "sampler": sampler, "steps": steps, "nfe": nfe, "options": opts, "seed": seed,
                    "seeds": [seed + i for i in range(batch)], "batch_size": batch, **conds,
                    "seconds": round(seconds, 3), "torchdiffusion": __version__}
    return [to_pil(xi) for xi in x.clamp(-1, 1)], settings
