"""`torchdiffusion sample` for token runs (masked diffusion, D3PM, autoregressive): text samples as JSON lines, or a
PNG grid for an image token set (fashion_mnist_levels); class labels and classifier-free guidance for conditional
diffusion models."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

# flags of image / Gaussian sampling, with the default that means "not given"
GAUSSIAN_ONLY = {"npz": None, "prompt": None,
                 "negative_class": None, "negative_prompt": None, "guidance_rescale": 0.0,
                 "guidance_interval": None, "threshold": None, "classifier": None, "classifier_scale": 1.0,
                 "option": [], "eta": None, "cache_interval": None, "control": None, "control_scale": 1.0}
TEXT_ONLY = {"length": None, "jsonl": None, "prefix": None}
TOKEN_ONLY = {**TEXT_ONLY, "guidance_mode": None}
NOT_FOR_TEXT = {"tiles": None}  # a text token run writes JSON lines, not tiles
NOT_FOR_IMAGES = TEXT_ONLY  # an image token run (fashion_mnist_levels) writes tiles, not text


def add_token_arguments(sp: argparse.ArgumentParser, positive_int: Any) -> None:
    """--length, --jsonl, --prefix, --guidance-mode: the flags of token runs."""
    g = sp.add_argument_group("token runs (kjv_mdlm, kjv_ar, ...)")
    g.add_argument("--length", type=positive_int(1_000_000), default=None,
                   help="characters per sample (default and maximum: the model's seq_len)")
    g.add_argument("--jsonl", default=None, metavar="FILE.jsonl",
                   help="write one JSON object per sample: {\"index\", \"text\", \"seed\"}")
    g.add_argument("--prefix", default=None, metavar="TEXT",
                   help="every sample starts with TEXT; masked diffusion infills the rest, the autoregressive model "
                        "continues it")
    g.add_argument("--guidance-mode", choices=("x0", "transition"), default=None,
                   help="what classifier-free guidance of a discrete diffusion model tilts: x0 (default) the "
                        "prediction p(x0 | x_t), transition the reverse step p(x_s | x_t) (Schiff et al. 2024, "
                        "D-CFG); see docs/discrete.md")


def given(a: argparse.Namespace, flags: dict[str, Any]) -> list[str]:
    """The flags among `flags` set to something other than their default, as --names."""
    return ["--" + k.replace("_", "-") for k, default in flags.items() if getattr(a, k, default) != default]


def refuse_token_flags(a: argparse.Namespace) -> None:
    """ValueError when a token run's flag is given for an image run."""
    extra = given(a, TOKEN_ONLY)
    if extra:
        raise ValueError(f"{', '.join(extra)} apply to token runs (text, or images in grey levels) only; {a.path} is not one")


def run_tokens(a: argparse.Namespace, loaded: Any, jsonl: Any, tiles: Any = None) -> dict[str, Any]:
    """Sample a token run and write its JSON lines (text) or PNG tiles (images); refuses the flags of Gaussian
    sampling."""
    from ..conditions import class_labels
    from ..data import IMAGE_TOKEN_SETS, decode_tokens, encode_text, save_image_tiles, token_images
    from ..discrete.generate import generate_tokens, model_seq_len

    cfg, model = loaded.config, loaded.model
    images = cfg.data.name in IMAGE_TOKEN_SETS
    extra = given(a, GAUSSIAN_ONLY) + given(a, NOT_FOR_IMAGES if images else NOT_FOR_TEXT)
    if a.sampler is not None and a.sampler != cfg.sample.sampler:
        extra.append(f"--sampler {a.sampler}")
    if extra:
        takes = "--tiles" if images else "--length, --prefix, --jsonl"
        raise ValueError(f"{', '.join(extra)} do not apply to {a.path}, a token run ({cfg.process.name} on "
                         f"{cfg.data.name}); it takes --num, --steps, --seed, --batch-size, {takes}, and "
                         f"--class-label, --guidance-scale, --guidance-mode for a class-conditional diffusion model")
    k = int(getattr(model, "num_classes", 0))
    conditional = given(a, {"class_label": None, "guidance_mode": None})
    conditional += ["--guidance-scale"] if a.guidance_scale not in (None, 1.0) else []
    if not k and conditional:
        raise ValueError(f"{', '.join(conditional)} need a class-conditional model; {a.path} is unconditional "
                         f"(model.params.num_classes is 0)")
    # the flags win; else the run's sample.guidance_scale and sample.guidance_mode (checked with its config)
    scale = cfg.sample.guidance_scale if a.guidance_scale is None else a.guidance_scale
    mode = a.guidance_mode or cfg.sample.guidance_mode or "x0"
    labels = class_labels(a.class_label, a.num, k, "--class-label") if k else None
    length = a.length or model_seq_len(model)
    prompt = None if a.prefix is None else encode_text(cfg.data.name, a.prefix)
    steps = a.steps or cfg.sample.steps
    t0 = time.perf_counter()
    ids, stats = generate_tokens(model, a.num, length, steps=steps, seed=a.seed, prompt=prompt,
                                 batch_size=a.batch_size, progress=sys.stderr.isatty(), class_labels=labels,
                                 guidance_scale=scale, guidance_mode=mode)
    seconds = time.perf_counter() - t0
    summary = {"checkpoint": loaded.meta["path"], "step": loaded.meta["step"], "sampler": cfg.sample.sampler,
               "steps": stats["steps"], "num": a.num, "length": length, "seconds": round(seconds, 3),
               "calls": stats["calls"], "rows": stats["rows"], "cached_rows": stats["cached_rows"],
               **({"guidance_scale": scale, "guidance_mode": mode} if k else {})}
    if images:  # one column per class when every class is drawn in turn
        x = token_images(cfg.data.name, ids, cfg.process.vocab_size)
        nrow = k if k and a.class_label in (None, "all") and a.num >= k else None
        if tiles:
            summary["tiles"] = str(save_image_tiles(x, tiles, nrow=nrow) or tiles)
        return summary
    texts = [decode_tokens(cfg.data.name, row) for row in ids]
    if jsonl:
        with open(jsonl, "w", encoding="utf-8") as f:
            for i, text in enumerate(texts):
                f.write(json.dumps({"index": i, "text": text, "seed": a.seed + i // a.batch_size}) + "\n")
    else:  # to stdout, one JSON string per sample, before the summary line
        for text in texts:
            print(json.dumps(text))
    return {**summary, **({"jsonl": str(jsonl)} if jsonl else {})}
