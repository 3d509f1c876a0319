"""The Generate tab's condition fields -> a GuidanceRecipe, checked against what the model is conditioned on (the
page's counterpart of the CLI's --class-label / --prompt / --guidance-* flags)."""

from __future__ import annotations

from typing import Any

import torch

from ..conditioning import GuidanceRecipe
from . import limits

Tensor = torch.Tensor


def model_conditions(model: Any) -> dict[str, int]:
    """{"num_classes": K, "context_dim": D} of the model's backbone (0: not conditioned that way)."""
    bcfg = model.backbone.config
    return {"num_classes": int(getattr(bcfg, "num_classes", 0) or 0),
            "context_dim": int(getattr(bcfg, "context_dim", 0) or 0)}


def class_labels(spec: Any, num: int, num_classes: int) -> Tensor:
    """(num,) labels from "all" (every class in turn) or a comma list, cycled over the samples."""
    spec = limits.text("class labels", spec).strip() or "all"
    if spec == "all":
        return torch.arange(num) % num_classes
    try:
        ys = [int(v) for v in spec.split(",")]
    except ValueError:
        raise ValueError(f"class labels: integers separated by commas, or 'all'; got {spec!r}") from None
    bad = [y for y in ys if not 0 <= y < num_classes]
    if bad:
        raise ValueError(f"class labels {bad} lie outside 0..{num_classes - 1}")
    return torch.tensor(ys)[torch.arange(num) % len(ys)]


def recipe(model: Any, num: int, *, labels: Any = "all", prompt: Any = "", negative_prompt: Any = "",
           scale: Any = 1.0, rescale: Any = 0.0, interval_lo: Any = None, interval_hi: Any = None
           ) -> tuple[GuidanceRecipe, dict[str, Any]]:
    """(the recipe, the conditions as plain values for the settings JSON). Fields the model has no use for are
    refused when set (a guidance scale on an unconditional model would silently do nothing)."""
    conds = model_conditions(model)
    scale = limits.number("guidance scale", scale, 0, limits.MAX_GUIDANCE)
    rescale = limits.number("guidance rescale", rescale, 0, 1)
    span = limits.interval(interval_lo, interval_hi)
    prompt, negative_prompt = limits.text("prompt", prompt), limits.text("negative prompt", negative_prompt)
    cond: dict[str, Tensor] = {}
    uncond: dict[str, Tensor] | None = None
    negative: dict[str, Tensor] | None = None
    plain: dict[str, Any] = {}
    if conds["num_classes"]:
        cond["class_labels"] = class_labels(labels, num, conds["num_classes"])
        uncond = {"class_labels": torch.full((num,), conds["num_classes"])}
        plain["class_labels"] = cond["class_labels"].tolist()
    if conds["context_dim"]:
        from ..text.context import encode_prompts, null_context

        if not prompt.strip():
            raise ValueError("this model is text-conditional: type a prompt")
        text = encode_prompts([prompt] * num)
        cond.update(text)
        uncond = {**(uncond or {}), **null_context(num, text["context"].shape[1], text["context"].shape[2])}
        if negative_prompt.strip():
            negative = {**uncond, **encode_prompts([negative_prompt] * num)}
        plain.update(prompt=prompt, negative_prompt=negative_prompt)
    elif prompt.strip() or negative_prompt.strip():
        raise ValueError("this model has no text conditioning; leave the prompts empty")
    if not (conds["num_classes"] or conds["context_dim"]) and (scale != 1.0 or rescale > 0 or span is not None):
        raise ValueError("guidance scale, rescale and interval need a conditional model (classes or prompts); "
                         "this one is unconditional: leave them at 1, 0 and empty")
    plain.update(guidance_scale=scale, guidance_rescale=rescale, guidance_interval=list(span) if span else None)
    return GuidanceRecipe(cond=cond, uncond=uncond, negative=negative, scale=scale, rescale=rescale,
                          interval=span), plain
