"""The run config's sampler against DDIM on a trained model of every shipped Gaussian config (issue 18).

Each run is sampled as `torchdiffusion sample` would: the config's sampler (`sample.sampler`) on its default grid at
each NFE, and DDIM at the same NFE, from the same start noises and with the same conditioning (class labels in turn,
prompts, a low-resolution image, a control map), latents decoded and images clipped to [-1, 1]. Both are scored
against a long reference solve of the same model (DPM-Solver++(3M) at --ref-nfe calls, no tail) by the per-sample
RMS distance (mean, and its 99th percentile: the far outliers an under-trained model's first steps can make) and
the sliced Wasserstein-2 distance between the sample sets.

    python benchmarks/default_sampler_configs.py --runs toy2d=runs/toy2d,fashion_mnist_cond=runs/fm_cond:5 --num 256

A run is given as NAME=PATH[:GUIDANCE_SCALE]; where NAME is a shipped config, its current `sample.sampler` is the
one scored (a run trained before a default changed keeps the old one in its own config).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from default_sampler_trained import cpu_minutes  # benchmarks/ is on sys.path for its scripts

from torchdiffusion.conditioning import GuidanceRecipe
from torchdiffusion.conditions import guidance_recipe, model_conditions
from torchdiffusion.data import load_dataset
from torchdiffusion.generate import start_noise
from torchdiffusion.loading import LoadedRun, load_run
from torchdiffusion.metrics.distances import sliced_wasserstein
from torchdiffusion.sampling import sample


def is_controlnet(path: str) -> bool:
    from torchdiffusion.controlnet.train import RUN_KIND
    from torchdiffusion.train.checkpoint import read_checkpoint

    try:
        return read_checkpoint(Path(path))[2].get("kind") == RUN_KIND
    except (OSError, ValueError, RuntimeError):  # not a readable checkpoint: load_run says why
        return False


def load(path: str, num: int, seed: int) -> tuple[LoadedRun, str]:
    """The run, with a ControlNet's control maps bound (the masks of held-out-seed shapes), and what conditions it."""
    if not is_controlnet(path):
        return load_run(path), ""
    from torchdiffusion.controlnet.conditions import control_image
    from torchdiffusion.controlnet.train import load_controlled_run

    loaded = load_controlled_run(path)
    options = dict(loaded.config.data.options)
    options.update(n=num, seed=seed + 7919)
    images = load_dataset(loaded.config.data.name, **options)[0][:num]
    kind = str(loaded.meta["config"]["control"]["kind"])
    loaded.model.backbone.control = control_image(images, kind)
    return loaded, f"control {kind} maps"


def recipe(loaded: LoadedRun, num: int, scale: float, seed: int) -> tuple[GuidanceRecipe, str]:
    """Each sample's conditioning: class labels in turn, prompts, or a low-resolution test image."""
    model = loaded.model
    if getattr(model.backbone.config, "low_res_size", 0):
        from torchdiffusion.inverse.superres import downsample_to, sampling_condition

        size = int(model.backbone.config.low_res_size)
        data = load_dataset(loaded.config.data.name, **loaded.config.data.options, split="test")[0][:num]
        return GuidanceRecipe(cond=sampling_condition(downsample_to(data, size), 0.0, seed)), f"{size}px test images"
    conds = model_conditions(model)
    prompts, said = None, []
    if conds["context_dim"]:
        from torchdiffusion.data.shapes import caption, sample_attributes

        prompts = [caption(a) for a in sample_attributes(16, seed=seed + 104729)]
        said.append("16 prompts")
    if conds["num_classes"]:
        said.append("classes in turn")
    if scale != 1.0:
        said.append(f"CFG {scale:g}")
    return guidance_recipe(model, num, labels="all" if conds["num_classes"] else None, prompts=prompts,
                           scale=scale), ", ".join(said)


def shipped_sampler(name: str) -> str | None:
    """The sampler of the shipped config `name` as it is now (a run trained before a default changed keeps the old
    one in its own config); None if no shipped config has that name."""
    from torchdiffusion.config import load_config

    try:
        return load_config(name).sample.sampler
    except (OSError, ValueError):
        return None


def score(y: Tensor, ref: Tensor) -> str:
    """Mean and 99th-percentile per-sample RMS to the reference, and the sliced W2 between the sets."""
    rms = (y - ref).pow(2).mean(1).sqrt()
    sw = float(sliced_wasserstein(y.double(), ref.double(), generator=torch.Generator().manual_seed(0)))
    return f"{float(rms.mean()):.3g} / {float(rms.quantile(0.99)):.3g} / {sw:.3g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", required=True, help="comma-separated NAME=PATH[:GUIDANCE_SCALE]")
    ap.add_argument("--nfe", default="10,20,50")
    ap.add_argument("--num", type=int, default=256, help="start noises per run")
    ap.add_argument("--ref-nfe", type=int, default=200)
    ap.add_argument("--extra", default="", help="comma-separated methods scored beside the config's and DDIM")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-cpu-minutes", type=float, default=60.0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    nfes = [int(n) for n in a.nfe.split(",")]
    print("| config | run (step) | conditioning | method | " + " | ".join(f"NFE {n}" for n in nfes) + " |")
    print("|---|---|---|---|" + "---:|" * len(nfes), flush=True)
    for spec in a.runs.split(","):
        if cpu_minutes() > a.max_cpu_minutes:
            print(f"# CPU budget spent: stopping before {spec}", file=sys.stderr)
            break
        name, path = spec.split("=", 1)
        path, _, scale = path.partition(":")
        loaded, control = load(path, a.num, a.seed)
        model = loaded.model
        guide, said = recipe(loaded, a.num, float(scale or 1.0), a.seed)
        said = ", ".join(s for s in (control, said) if s) or "none"
        den = guide.denoiser(model, slice(0, a.num))
        x = start_noise(model, loaded.data_shape, a.num, a.seed)

        def solve(method: str, nfe: int, **options: Any) -> Tensor:
            with torch.no_grad():
                y = loaded.decode(sample(den, x, method=method, nfe=nfe, **options))
            return (y.clamp(-1, 1) if y.ndim == 4 else y).flatten(1)

        ref = solve("dpmpp_3m", a.ref_nfe, tail=0)
        own = shipped_sampler(name) or loaded.config.sample.sampler
        methods = dict.fromkeys([own, "ddim", *filter(None, a.extra.split(","))])
        for m in methods:
            cells = [score(solve(m, n), ref) for n in nfes]
            label = f"**{m}** (config)" if m == own else m
            print(f"| {name} | {path} ({loaded.meta.get('step')}) | {said} | {label} | " + " | ".join(cells) + " |",
                  flush=True)
    print(f"\n({cpu_minutes():.1f} CPU minutes; cells: mean RMS / 99th-percentile RMS / sliced W2 to the reference)")


if __name__ == "__main__":
    main()
