"""Text-to-image on the captioned shapes: attributes of samples read back by direct measurement of the canvas.

A text-conditional model (configs/shapes_text.yaml, trained without the held-out colour x shape pairs) is prompted
with captions of one or two shapes: captions of combinations seen in training, and captions naming a held-out pair
(e.g. "a large red triangle ..."), at several classifier-free guidance scales (w = 1: no guidance). Each sample's
shapes, colours, sizes and positions are measured on the canvas (`torchdiffusion.data.measure_attributes`) and
compared with the caption's.

    .venv/bin/python -m torchdiffusion train shapes_text --max-cpu-minutes 20 --set train.num_threads=1 \\
        --out runs/shapes_text20
    .venv/bin/python benchmarks/shapes_text.py --model runs/shapes_text20
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from torchdiffusion.loading import LoadedRun, load_run
from torchdiffusion.conditioning import GuidanceRecipe
from torchdiffusion.data import load_shapes, measure_attributes, save_image_tiles
from torchdiffusion.data.shapes import attribute_accuracy
from torchdiffusion.generate import generate
from torchdiffusion.text.context import encode_prompts, null_context


@torch.no_grad()
def attribute_rows(loaded: LoadedRun, num: int, scales: list[float], sampler: str, nfe: int,
                   tiles: str | None = None) -> list[dict]:
    """Attribute accuracies of `num` samples per caption split and guidance scale (latent models decoded first)."""
    rows = []
    for split, seed in (("train", 1001), ("heldout", 1002)):  # seeds unlike training's: new images and layouts
        ref = load_shapes(n=num, seed=seed, size=loaded.config.data.options.get("size", 32), split=split)
        text = encode_prompts(ref.captions)
        empty = null_context(num, text["context"].shape[1])
        for w in scales:
            c0 = time.process_time()
            z, calls = generate(loaded.model, loaded.data_shape, num, sampler=sampler, steps=nfe, seed=0,
                                guidance=GuidanceRecipe(cond=text, uncond=empty, scale=w))
            x = loaded.decode(z).clamp(-1, 1)
            acc = attribute_accuracy(measure_attributes(x), ref.attributes)
            r = {"split": split, "scale": w, "nfe": calls, "cpu_seconds": round(time.process_time() - c0, 1), **acc}
            rows.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
            if tiles and w == max(scales):
                save_image_tiles(x[:32], f"{tiles}_{split}_w{w:g}.png")
        clean = attribute_accuracy(measure_attributes(ref.images), ref.attributes)
        rows.append({"split": split, "scale": "data", **clean})
    return rows


def print_table(rows: list[dict]) -> None:
    """The rows as a markdown table."""
    print("| captions | guidance w | shape | colour | size | position | all attributes of the image |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        w = r["scale"] if isinstance(r["scale"], str) else f"{r['scale']:g}"
        print(f"| {r['split']} | {w} | {r['shape']:.3f} | {r['colour']:.3f} | {r['size']:.3f} | "
              f"{r['position']:.3f} | {r['all']:.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="a shapes_text, shapes_text64 or shapes_text_ldm run")
    ap.add_argument("--num", type=int, default=200, help="prompts per split")
    ap.add_argument("--scales", default="1,2,4")
    ap.add_argument("--sampler", default="dpmpp_2m")
    ap.add_argument("--nfe", type=int, default=20)
    ap.add_argument("--out", default="outputs/shapes_text.json")
    a = ap.parse_args()
    torch.set_num_threads(2)
    loaded = load_run(a.model)
    meta = loaded.meta
    rows = attribute_rows(loaded, a.num, [float(v) for v in a.scales.split(",")], a.sampler, a.nfe,
                          tiles="outputs/shapes_text")
    print(f"\nModel {meta['path']} (step {meta['step']}), {a.sampler} at {a.nfe} NFE, {a.num} prompts per split.\n")
    print_table(rows)
    with open(a.out, "w") as f:
        json.dump({"command": " ".join(sys.argv), "checkpoint": meta["path"], "step": meta["step"], "rows": rows},
                  f, indent=2)


if __name__ == "__main__":
    main()
