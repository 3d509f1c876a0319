"""The Generate tab's condition fields -> a GuidanceRecipe, checked against what the model is conditioned on (the
page's counterpart of the CLI's --class-label / --prompt / --guidance-* flags)."""

from __future__ import annotations

from typing import Any

from ..conditioning import GuidanceRecipe
from ..conditions import guidance_recipe, model_conditions
from . import limits


FIELD_NAMES = {"labels": "class labels", "prompt": "prompt", "negative_prompt": "negative prompt",
               "scale": "guidance scale", "rescale": "guidance rescale", "interval": "guidance interval",
               "classifier": "conditional model"}


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
    labels = limits.text("class labels", labels) if conds["num_classes"] else None
    if not (conds["num_classes"] or conds["context_dim"]) and span is not None:
        raise ValueError("a guidance interval needs a conditional model (classes or prompts); this one is "
                         "unconditional: leave it empty")
    made = guidance_recipe(model, num, labels=labels, prompts=[prompt] if prompt.strip() else None,
                           negative_prompt=negative_prompt, scale=scale, rescale=rescale, interval=span,
                           names=FIELD_NAMES)
    plain: dict[str, Any] = {}
    if conds["num_classes"]:
        plain["class_labels"] = made.cond["class_labels"].tolist()
    if conds["context_dim"]:
        plain.update(prompt=prompt, negative_prompt=negative_prompt)
    plain.update(guidance_scale=scale, guidance_rescale=rescale, guidance_interval=list(span) if span else None)
    return made, plain
