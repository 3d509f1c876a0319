"""A model's conditions from plain values (class labels, prompts, guidance settings) -> a GuidanceRecipe, checked
against what the model is conditioned on. The CLI's flags and the web page's fields both end here."""

from __future__ import annotations

import warnings
from typing import Any, Mapping

import torch

from .conditioning import GuidanceRecipe

Tensor = torch.Tensor

CLASSIFIER_SIGMA_WARN = 100.0  # a model reaching sigma above this gets a warning for unbounded classifier guidance

# How each input is named in messages; the CLI passes its flag names, the page its field labels.
NAMES = {"labels": "class labels", "negative_labels": "negative class", "prompt": "prompt",
         "negative_prompt": "negative prompt", "scale": "guidance scale", "rescale": "guidance rescale",
         "interval": "guidance interval", "classifier": "classifier"}


def model_conditions(model: Any) -> dict[str, int]:
    """{"num_classes": K, "context_dim": D} of the model's backbone (0: not conditioned that way)."""
    bcfg = model.backbone.config
    return {"num_classes": int(getattr(bcfg, "num_classes", 0) or 0),
            "context_dim": int(getattr(bcfg, "context_dim", 0) or 0)}


def class_labels(spec: str | None, num: int, num_classes: int, name: str = "class labels") -> Tensor:
    """(num,) labels from "all" / None (every class in turn) or a comma list, cycled over the samples."""
    spec = "all" if spec is None else str(spec).strip() or "all"
    if spec == "all":
        return torch.arange(num) % num_classes
    try:
        ys = [int(v) for v in spec.split(",")]
    except ValueError:
        raise ValueError(f"{name} expects integers separated by commas, or 'all'; got {spec!r}") from None
    bad = [y for y in ys if not 0 <= y < num_classes]
    if bad:
        raise ValueError(f"{name} {bad} lie outside 0..{num_classes - 1}")
    return torch.tensor(ys)[torch.arange(num) % len(ys)]


def check_interval(lo: float, hi: float, name: str = "guidance interval") -> tuple[float, float]:
    """The sigma range (lo, hi) where guidance acts (Kynkäänniemi et al. 2024); 0 <= lo < hi."""
    if not 0 <= lo < hi:
        raise ValueError(f"{name} needs 0 <= LO < HI, got {lo:g}, {hi:g}")
    return float(lo), float(hi)


def guidance_recipe(model: Any, num: int, *, labels: str | None = None, negative_labels: str | None = None,
                    prompts: list[str] | None = None, negative_prompt: str | None = None, scale: float = 1.0,
                    rescale: float = 0.0, interval: tuple[float, float] | None = None, threshold: Any = None,
                    classifier: Any = None, classifier_scale: float = 1.0,
                    names: Mapping[str, str] | None = None) -> GuidanceRecipe:
    """The recipe for `num` samples: CFG (Ho & Salimans 2022) over class labels and/or prompts, negative
    conditions, rescale, interval, thresholding, and classifier guidance (Dhariwal & Nichol 2021, eq. 12) when
    `classifier` (a loaded classifier run) is given. Inputs the model has no use for are refused, since they would
    silently do nothing."""
    n = {**NAMES, **(names or {})}
    conds = model_conditions(model)
    num_classes, context_dim = conds["num_classes"], conds["context_dim"]
    cond: dict[str, Tensor] = {}
    uncond: dict[str, Tensor] | None = None
    negative: dict[str, Tensor] | None = None
    if num_classes:
        cond["class_labels"] = class_labels(labels, num, num_classes, n["labels"])
        uncond = {"class_labels": torch.full((num,), num_classes)}
        if negative_labels is not None:
            negative = {"class_labels": class_labels(negative_labels, num, num_classes, n["negative_labels"])}
    elif (labels is not None or negative_labels is not None) and classifier is None:
        raise ValueError(f"{n['labels']} / {n['negative_labels']}: this model is not class-conditional "
                         f"(num_classes = 0); use a {n['classifier']} for classifier guidance")
    if context_dim:
        from .text.context import encode_prompts, null_context

        if not prompts or not any(p.strip() for p in prompts):
            raise ValueError(f"this model is text-conditional: give a {n['prompt']}")
        text = encode_prompts([prompts[i % len(prompts)] for i in range(num)])
        cond.update(text)
        uncond = {**(uncond or {}), **null_context(num, text["context"].shape[1], text["context"].shape[2])}
        if negative_prompt is not None and negative_prompt.strip():
            negative = {**(negative or uncond), **encode_prompts([negative_prompt] * num)}
    elif any(p.strip() for p in prompts or []) or (negative_prompt or "").strip():
        raise ValueError(f"{n['prompt']} / {n['negative_prompt']}: this model has no text conditioning "
                         f"(context_dim = 0); leave them out")
    if not (num_classes or context_dim) and (scale != 1.0 or rescale > 0):
        raise ValueError(f"{n['scale']} / {n['rescale']} need a conditional model (num_classes or context_dim > 0); "
                         f"this one is unconditional: leave them at 1 and 0, or use a {n['classifier']}")
    clf, clf_labels = None, None
    if classifier is not None:
        if classifier.config.loss.kind != "classifier":
            raise ValueError(f"{n['classifier']}: not a classifier run (loss.kind is {classifier.config.loss.kind!r})")
        clf = classifier.model.raw_ve
        clf_labels = cond.get("class_labels",
                              class_labels(labels, num, classifier.model.backbone.config.num_classes, n["labels"]))
        sigma_max = float(getattr(model, "sigma_max", 0.0))
        if classifier_scale > 0 and interval is None and sigma_max > CLASSIFIER_SIGMA_WARN:
            warnings.warn(f"classifier guidance at every sigma up to {sigma_max:g}: its x0 shift s sigma^2 grad log p "
                          f"grows with sigma^2 and broke every image in the Fashion-MNIST guidance benchmark "
                          f"(docs/benchmarks.md); consider {n['interval']} 0,10", UserWarning, stacklevel=2)
    return GuidanceRecipe(cond=cond, uncond=uncond, negative=negative, scale=scale, rescale=rescale,
                          interval=interval, threshold=threshold, classifier=clf, classifier_labels=clf_labels,
                          classifier_scale=classifier_scale if classifier is not None else 0.0)
