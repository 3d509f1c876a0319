"""`torchdiffusion sample`'s conditioning and guidance flags, turned into a GuidanceRecipe for generate()."""

from __future__ import annotations

import argparse
import warnings
from typing import Any

import torch

from ..conditioning import GuidanceRecipe
from .common import finite_float

Tensor = torch.Tensor


CLASSIFIER_SIGMA_WARN = 100.0  # a model reaching sigma above this gets a warning for unbounded classifier guidance


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


def _labels(spec: str | None, num: int, num_classes: int, flag: str = "--class-label") -> Tensor:
    """(num,) labels from 'all' or a comma list, cycled."""
    if spec is None or spec == "all":
        return torch.arange(num) % num_classes
    try:
        ys = [int(v) for v in spec.split(",")]
    except ValueError:
        raise ValueError(f"{flag} expects integers separated by commas or 'all', got {spec!r}") from None
    bad = [y for y in ys if not 0 <= y < num_classes]
    if bad:
        raise ValueError(f"{flag}: class(es) {bad} outside 0..{num_classes - 1}")
    return torch.tensor(ys)[torch.arange(num) % len(ys)]


def _interval(spec: str | None) -> tuple[float, float] | None:
    if spec is None:
        return None
    try:
        lo, hi = (float(v) for v in spec.split(","))
    except ValueError:
        raise ValueError(f"--guidance-interval expects LO,HI (two numbers), got {spec!r}") from None
    if not 0 <= lo < hi:
        raise ValueError(f"--guidance-interval needs 0 <= LO < HI, got {lo}, {hi}")
    return lo, hi


def recipe_from_args(a: argparse.Namespace, model: Any, num: int) -> GuidanceRecipe:
    """The GuidanceRecipe the flags ask for, checked against what the model is conditioned on."""
    bcfg = model.backbone.config
    num_classes, context_dim = int(getattr(bcfg, "num_classes", 0)), int(getattr(bcfg, "context_dim", 0))
    cond: dict[str, Tensor] = {}
    uncond: dict[str, Tensor] | None = None
    negative: dict[str, Tensor] | None = None
    if num_classes:
        cond["class_labels"] = _labels(a.class_label, num, num_classes)
        uncond = {"class_labels": torch.full((num,), num_classes)}
        if a.negative_class is not None:
            negative = {"class_labels": _labels(str(a.negative_class), num, num_classes, "--negative-class")}
    elif a.class_label is not None or a.negative_class is not None:
        if a.classifier is None:
            raise ValueError("--class-label / --negative-class: this model is not class-conditional "
                             "(num_classes = 0); use --classifier CKPT for classifier guidance")
    if context_dim:
        from ..text.context import encode_prompts, null_context

        if not a.prompt:
            raise ValueError("this model is text-conditional: give --prompt TEXT")
        prompts = [a.prompt[i % len(a.prompt)] for i in range(num)]
        text = encode_prompts(prompts)
        cond.update(text)
        empty = null_context(num, text["context"].shape[1], text["context"].shape[2])
        uncond = {**(uncond or {}), **empty}
        if a.negative_prompt is not None:
            negative = {**(negative or uncond), **encode_prompts([a.negative_prompt] * num)}
    elif a.prompt or a.negative_prompt is not None:
        raise ValueError("--prompt / --negative-prompt: this model has no text conditioning (context_dim = 0)")
    if not (num_classes or context_dim) and (a.guidance_scale != 1.0 or a.guidance_rescale > 0):
        raise ValueError("--guidance-scale / --guidance-rescale need a conditional model (num_classes or "
                         "context_dim > 0); for an unconditional model use --classifier CKPT")
    classifier, labels = None, None
    if a.classifier is not None:
        from ..loading import load_run

        loaded = load_run(a.classifier, device=next(model.parameters()).device)
        clf, clf_cfg = loaded.model, loaded.config
        if clf_cfg.loss.kind != "classifier":
            raise ValueError(f"--classifier {a.classifier}: not a classifier run (loss.kind is {clf_cfg.loss.kind!r})")
        classifier = clf.raw_ve
        labels = cond.get("class_labels", _labels(a.class_label, num, clf.backbone.config.num_classes))
        sigma_max = float(getattr(model, "sigma_max", 0.0))
        if a.classifier_scale > 0 and a.guidance_interval is None and sigma_max > CLASSIFIER_SIGMA_WARN:
            warnings.warn(f"classifier guidance at every sigma up to {sigma_max:g}: its x0 shift s sigma^2 grad log p "
                          f"grows with sigma^2 and broke every image in the Fashion-MNIST guidance benchmark (docs/benchmarks.md); consider "
                          f"--guidance-interval 0,10", UserWarning, stacklevel=2)
    return GuidanceRecipe(cond=cond, uncond=uncond, negative=negative, scale=a.guidance_scale,
                          rescale=a.guidance_rescale, interval=_interval(a.guidance_interval), threshold=a.threshold,
                          classifier=classifier, classifier_labels=labels,
                          classifier_scale=a.classifier_scale if a.classifier else 0.0)
