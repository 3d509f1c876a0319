"""`torchdiffusion sample`'s conditioning and guidance flags, turned into a GuidanceRecipe for generate()."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from ..conditioning import GuidanceRecipe
from ..conditions import check_interval, guidance_recipe
from .common import finite_float

Tensor = torch.Tensor




def add_guidance_arguments(sp: argparse.ArgumentParser) -> None:
    """The flags of conditional sampling and guidance."""
    g = sp.add_argument_group("conditioning and guidance")
    g.add_argument("--class-label", default=None, metavar="Y[,Y...]|all",
                   help="class per sample, cycled over the samples (default for class-conditional models: all "
                        "classes in turn)")
    g.add_argument("--prompt", action="append", default=None, metavar="TEXT",
                   help="text prompt for text-conditional models (repeatable; cycled over the samples)")
    g.add_argument("--guidance-scale", type=finite_float, default=1.0, metavar="W",
                   help="classifier-free guidance D_u + W (D_c - D_u); 1 = the conditional model, 0 = unconditional")
    g.add_argument("--negative-class", type=int, default=None, metavar="Y",
                   help="use this class instead of the null label in the guidance formula")
    g.add_argument("--negative-prompt", default=None, metavar="TEXT", help="text instead of the empty prompt")
    g.add_argument("--guidance-rescale", type=finite_float, default=0.0, metavar="PHI",
                   help="CFG-rescale against over-saturation (Lin et al. 2024), 0..1")
    g.add_argument("--guidance-interval", default=None, metavar="LO,HI",
                   help="apply guidance (CFG and classifier) only for sigma in (LO, HI] (Kynkaanniemi et al. 2024)")
    g.add_argument("--threshold", choices=["static", "dynamic"], default=None,
                   help="clip x0 to [-1, 1] (static) or by Imagen's percentile rule (dynamic)")
    g.add_argument("--classifier", default=None, metavar="CKPT",
                   help="noise-conditional classifier (train-classifier run or checkpoint) for classifier guidance")
    g.add_argument("--classifier-scale", type=finite_float, default=1.0, metavar="S",
                   help="classifier guidance scale: D + S sigma^2 grad log p(y | x)")


def _interval(spec: str | None) -> tuple[float, float] | None:
    if spec is None:
        return None
    try:
        lo, hi = (float(v) for v in spec.split(","))
    except ValueError:
        raise ValueError(f"--guidance-interval expects LO,HI (two numbers), got {spec!r}") from None
    return check_interval(lo, hi, "--guidance-interval")


FLAG_NAMES = {"labels": "--class-label", "negative_labels": "--negative-class", "prompt": "--prompt TEXT",
              "negative_prompt": "--negative-prompt", "scale": "--guidance-scale", "rescale": "--guidance-rescale",
              "interval": "--guidance-interval", "classifier": "--classifier CKPT"}


def recipe_from_args(a: argparse.Namespace, model: Any, num: int) -> GuidanceRecipe:
    """The GuidanceRecipe the flags ask for, checked against what the model is conditioned on."""
    classifier = None
    if a.classifier is not None:
        from ..loading import load_run

        classifier = load_run(a.classifier, device=next(model.parameters()).device)
    return guidance_recipe(model, num, labels=a.class_label,
                           negative_labels=None if a.negative_class is None else str(a.negative_class),
                           prompts=a.prompt, negative_prompt=a.negative_prompt, scale=a.guidance_scale,
                           rescale=a.guidance_rescale, interval=_interval(a.guidance_interval), threshold=a.threshold,
                           classifier=classifier, classifier_scale=a.classifier_scale, names=FLAG_NAMES)


def refuse_pixel_guidance(a: argparse.Namespace, loaded: Any) -> None:
    """ValueError for guidance flags that assume pixels on a latent model: --threshold clips x0 to [-1, 1], which
    the unit-variance latents are not bounded by, and a classifier of pixel images cannot read latents."""
    if loaded.codec is None:
        return
    if getattr(a, "threshold", None) is not None:
        raise ValueError(f"--threshold {a.threshold}: {a.path} is a latent diffusion model, whose x0 are latents "
                         f"scaled to unit variance, not pixels in [-1, 1]; clipping them to [-1, 1] would distort "
                         f"the samples (leave --threshold out)")
    if getattr(a, "classifier", None) is not None:
        raise ValueError(f"--classifier {a.classifier}: {a.path} is a latent diffusion model, and classifier "
                         f"guidance needs a classifier of its latents; noise-conditional classifiers are trained "
                         f"on pixel images only (use classifier-free guidance: --guidance-scale)")
