"""`torchdiffusion sample` for token runs (masked diffusion, D3PM, autoregressive): text samples as JSON lines."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

# flags of image / Gaussian sampling, with the default that means "not given"
GAUSSIAN_ONLY = {"tiles": None, "npz": None, "class_label": None, "prompt": None, "guidance_scale": 1.0,
                 "negative_class": None, "negative_prompt": None, "guidance_rescale": 0.0,
                 "guidance_interval": None, "threshold": None, "classifier": None, "classifier_scale": 1.0,
                 "option": [], "eta": None, "cache_interval": None, "control": None, "control_scale": 1.0}
TOKEN_ONLY = {"length": None, "jsonl": None, "prefix": None}


def add_token_arguments(sp: argparse.ArgumentParser, positive_int: Any) -> None:
    """--length, --jsonl, --prefix: the flags of token runs."""
    g = sp.add_argument_group("token runs (kjv_mdlm, kjv_ar, ...)")
    g.add_argument("--length", type=positive_int(1_000_000), default=None,
                   help="characters per sample (default and maximum: the model's seq_len)")
    g.add_argument("--jsonl", default=None, metavar="FILE.jsonl",
                   help="write one JSON object per sample: {\"index\", \"text\", \"seed\"}")
    g.add_argument("--prefix", default=None, metavar="TEXT",
                   help="every sample starts with TEXT; masked diffusion infills the rest, the autoregressive model "
                        "continues it")


def given(a: argparse.Namespace, flags: dict[str, Any]) -> list[str]:
    """The flags among `flags` set to something other than their default, as --names."""
    return ["--" + k.replace("_", "-") for k, default in flags.items() if getattr(a, k, default) != default]


def refuse_token_flags(a: argparse.Namespace) -> None:
    """ValueError when a token run's flag is given for an image run."""
    extra = given(a, TOKEN_ONLY)
    if extra:
        raise ValueError(f"{', '.join(extra)} apply to token runs (text) only; {a.path} is not one")


def run_tokens(a: argparse.Namespace, loaded: Any, jsonl: Any) -> dict[str, Any]:
    """Sample a token run and write its JSON lines; refuses the flags of Gaussian sampling."""
    from ..data import decode_tokens, encode_text
    from ..discrete.generate import generate_tokens, model_seq_len

    extra = given(a, GAUSSIAN_ONLY)
    if a.sampler is not None and a.sampler != loaded.config.sample.sampler:
        extra.append(f"--sampler {a.sampler}")
    if extra:
        raise ValueError(f"{', '.join(extra)} do not apply to {a.path}, a token run ({loaded.config.process.name}); "
                         f"it takes --num, --length, --steps, --seed, --prefix, --jsonl, --batch-size")
    cfg, model = loaded.config, loaded.model
    length = a.length or model_seq_len(model)
    prompt = None if a.prefix is None else encode_text(cfg.data.name, a.prefix)
    steps = a.steps or cfg.sample.steps
    t0 = time.perf_counter()
    ids, stats = generate_tokens(model, a.num, length, steps=steps, seed=a.seed, prompt=prompt,
                                 batch_size=a.batch_size, progress=sys.stderr.isatty())
    seconds = time.perf_counter() - t0
    texts = [decode_tokens(cfg.data.name, row) for row in ids]
    if jsonl:
        with open(jsonl, "w", encoding="utf-8") as f:
            for i, text in enumerate(texts):
                f.write(json.dumps({"index": i, "text": text, "seed": a.seed + i // a.batch_size}) + "\n")
    else:  # to stdout, one JSON string per sample, before the summary line
        for text in texts:
            print(json.dumps(text))
    return {"checkpoint": loaded.meta["path"], "step": loaded.meta["step"], "sampler": cfg.sample.sampler,
            "steps": stats["steps"], "num": a.num, "length": length, "seconds": round(seconds, 3),
            "calls": stats["calls"], "rows": stats["rows"], "cached_rows": stats["cached_rows"],
            **({"jsonl": str(jsonl)} if jsonl else {})}
