"""KJV benchmark: masked diffusion (kjv_mdlm) against the autoregressive baseline (kjv_ar) of the same size and budget,
and block diffusion (BD3-LM: masked diffusion within blocks, autoregressive over them) as a third row: kjv_bd3lm_ar,
adapted from the AR run's weights at --bd3lm-from-ar CPU-minutes (its own budget covers them), or kjv_bd3lm from
scratch with --bd3lm-from-ar 0.

Trains the three (or takes trained runs), then reports on the held-out verses (every 20th): bits per character (the AR
model's exact NLL, the diffusion model's bound), the share of sample words found in a dictionary (Debian wamerican),
a few samples, and generation speed at equal length (CPU seconds of this process per sample).

    python benchmarks/kjv_text.py --max-cpu-minutes 30 --out outputs/kjv_text.json
    python benchmarks/kjv_text.py --mdlm runs/kjv_mdlm --ar runs/kjv_ar [--bd3lm runs/kjv_bd3lm]   # trained elsewhere
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import sys
import time
from pathlib import Path

import torch

from torchdiffusion.config import load_config
from torchdiffusion.data import decode_tokens
from torchdiffusion.discrete.generate import generate_tokens
from torchdiffusion.evaluate.text import bits_per_token, heldout_windows
from torchdiffusion.loading import load_run
from torchdiffusion.train import train

DICTIONARY = Path("/usr/share/dict/american-english")
WORD = re.compile(r"[A-Za-z]{3,}")  # words of 3+ letters: shorter random strings are often words


def load_dictionary(path: Path = DICTIONARY) -> set[str]:
    """Lower-cased words of a word list, one per line (possessives "'s" dropped)."""
    if not path.is_file():
        sys.exit(f"error: {path} not found; install the Debian package wamerican (make data)")
    return {w.lower() for w in path.read_text(encoding="utf-8", errors="replace").split() if "'" not in w}


def word_share(texts: list[str], words: set[str]) -> tuple[float, int]:
    """Share of the alphabetic words of texts that the dictionary has, and how many words there were."""
    found = [w.lower() in words for t in texts for w in WORD.findall(t)]
    return (sum(found) / len(found) if found else 0.0), len(found)


def train_all(out: Path, minutes: float, from_ar: float) -> dict[str, Path]:
    """Train kjv_mdlm, kjv_ar and the block-diffusion row, each for `minutes` CPU minutes on one thread (resumes a run
    there). from_ar > 0: the AR run trains in two legs (exact resume) and the block row is kjv_bd3lm_ar started from
    the AR weights at from_ar CPU-minutes, trained for the rest, so it too costs `minutes` in all; 0: kjv_bd3lm."""
    runs = {name: out / name for name in ("kjv_mdlm", "kjv_ar", "kjv_bd3lm")}

    def run(name: str, path: Path, budget: float, init_from: Path | None = None) -> dict:
        cfg = load_config(name, ["train.num_threads=1"])
        return train(cfg, path, max_cpu_minutes=budget, progress=sys.stderr.isatty(), init_from=init_from)

    run("kjv_mdlm", runs["kjv_mdlm"], minutes)
    start = None
    if from_ar:
        start = out / f"kjv_ar_at_{from_ar:g}_cpu_minutes.safetensors"  # kept: the AR run prunes old checkpoints
        shutil.copyfile(run("kjv_ar", runs["kjv_ar"], from_ar)["checkpoint"], start)
    run("kjv_ar", runs["kjv_ar"], minutes - from_ar)
    run("kjv_bd3lm_ar" if from_ar else "kjv_bd3lm", runs["kjv_bd3lm"], minutes - from_ar, start)
    return runs


def score(run: Path, args: argparse.Namespace, words: set[str]) -> dict:
    """bits/char on held-out windows, samples, their dictionary share and the CPU time to draw them."""
    torch.set_num_threads(1)
    loaded = load_run(run)
    data = heldout_windows(loaded.config, args.bpd_num)
    nll = bits_per_token(loaded.model, data, strata=args.strata, seed=0)
    c0 = time.process_time()
    ids, stats = generate_tokens(loaded.model, args.num, args.length, steps=args.steps, seed=0,
                                 batch_size=args.num)
    cpu = time.process_time() - c0
    texts = [decode_tokens(loaded.config.data.name, row) for row in ids]
    share, n_words = word_share(texts, words)
    return {"run": str(run), "step": loaded.meta["step"], "bits_per_char": nll["bits_per_token"],
            "std_err": nll["std_err"], "windows": nll["windows"], "dictionary_share": share, "words": n_words,
            "sample_cpu_seconds": cpu, "cpu_ms_per_sample": 1000 * cpu / args.num, "calls": stats["calls"],
            "rows": stats["rows"], "samples": texts[:args.show]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-cpu-minutes", type=float, default=30.0, help="training budget of each model")
    ap.add_argument("--runs", default="runs/kjv_bench", help="where to train (ignored with --mdlm and --ar)")
    ap.add_argument("--mdlm", default=None, help="a trained masked-diffusion run (skips its training)")
    ap.add_argument("--ar", default=None, help="a trained autoregressive run (skips its training)")
    ap.add_argument("--bd3lm", default=None, help="a trained block-diffusion run, scored as a third row (optional with "
                    "--mdlm and --ar)")
    ap.add_argument("--bd3lm-from-ar", type=float, default=10.0, metavar="MINUTES",
                    help="the block-diffusion row starts from the AR run's weights at MINUTES CPU-minutes and trains "
                    "for the rest of the budget (kjv_bd3lm_ar, AR-to-diffusion adaptation); 0: kjv_bd3lm from scratch")
    ap.add_argument("--bpd-num", type=int, default=400, help="held-out windows scored")
    ap.add_argument("--strata", type=int, default=8, help="stratified times per window of the diffusion bound")
    ap.add_argument("--num", type=int, default=64, help="samples per model")
    ap.add_argument("--length", type=int, default=128, help="characters per sample")
    ap.add_argument("--steps", type=int, default=128, help="steps of the diffusion sampler (block diffusion: spread "
                    "over its blocks)")
    ap.add_argument("--show", type=int, default=4, help="samples printed per model")
    ap.add_argument("--out", default="outputs/kjv_text.json")
    args = ap.parse_args()
    if not 0 <= args.bd3lm_from_ar < args.max_cpu_minutes:
        ap.error(f"--bd3lm-from-ar must be at least 0 and less than --max-cpu-minutes ({args.max_cpu_minutes:g}), "
                 f"got {args.bd3lm_from_ar:g}")
    words = load_dictionary()
    if args.mdlm and args.ar:
        runs = {"kjv_mdlm": Path(args.mdlm), "kjv_ar": Path(args.ar)}
        if args.bd3lm:
            runs["kjv_bd3lm"] = Path(args.bd3lm)
    else:
        runs = train_all(Path(args.runs), args.max_cpu_minutes, args.bd3lm_from_ar)
    rows = {name: score(run, args, words) for name, run in runs.items()}
    # the same windows, unchanged, as if they were samples: the dictionary share of real KJV text
    held = heldout_windows(load_run(runs["kjv_ar"]).config, args.num)
    real_share, _ = word_share([decode_tokens("kjv", r[: args.length]) for r in held], words)
    m, a = rows["kjv_mdlm"], rows["kjv_ar"]
    result = {"command": " ".join(sys.argv), "machine": f"{platform.processor() or platform.machine()}, "
              f"{platform.system()}, torch {torch.__version__}, 1 thread", "budget_cpu_minutes": args.max_cpu_minutes,
              "models": rows, "heldout_dictionary_share": real_share,
              "bpc_ratio_mdlm_over_ar": m["bits_per_char"] / a["bits_per_char"],
              "speed_ratio_mdlm_over_ar": m["sample_cpu_seconds"] / a["sample_cpu_seconds"]}
    if "kjv_bd3lm" in rows:
        bd = rows["kjv_bd3lm"]
        bd_run = load_run(runs["kjv_bd3lm"])
        result.update({"bd3lm_block_size": bd_run.config.process.block_size,
                       "bd3lm_init_from": bd_run.meta.get("init_from"),
                       "bpc_ratio_bd3lm_over_ar": bd["bits_per_char"] / a["bits_per_char"],
                       "speed_ratio_bd3lm_over_ar": bd["sample_cpu_seconds"] / a["sample_cpu_seconds"]})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"| model | step | held-out bits/char | dictionary share of sample words | CPU ms / sample "
          f"({args.length} chars) | network calls |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['step']} | {r['bits_per_char']:.3f} ± {r['std_err']:.3f} | "
              f"{r['dictionary_share']:.3f} | {r['cpu_ms_per_sample']:.0f} | {r['calls']} |")
    print(f"| held-out text itself | | | {real_share:.3f} | | |")
    print(f"\nbits/char ratio MDLM / AR: {result['bpc_ratio_mdlm_over_ar']:.3f} (goal <= 1.2); "
          f"sampling time ratio MDLM / AR: {result['speed_ratio_mdlm_over_ar']:.2f}")
    if "kjv_bd3lm" in rows:
        print(f"bits/char ratio BD3-LM (block size {result['bd3lm_block_size']}) / AR: "
              f"{result['bpc_ratio_bd3lm_over_ar']:.3f}; sampling time ratio BD3-LM / AR: "
              f"{result['speed_ratio_bd3lm_over_ar']:.2f}")
    for name, r in rows.items():
        print(f"\n{name} samples:")
        for t in r["samples"]:
            print("  " + json.dumps(t))


if __name__ == "__main__":
    main()
