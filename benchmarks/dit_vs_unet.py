"""DiT vs U-Net on Fashion-MNIST at equal parameter count and equal CPU time.

configs/fashion_mnist_dit.yaml (DiT, 4x4 patches) and configs/fashion_mnist.yaml (U-Net) are trained side by
side, one thread each, for the same CPU minutes (process CPU time, so the machine's load does not favour either),
then sampled with the same sampler and scored by the feature-space FID of the training benchmark (the small
classifier trained on the Fashion-MNIST training set) against the 10k test images.

    .venv/bin/python benchmarks/dit_vs_unet.py --cpu-minutes 15 --num 2000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

from torchdiffusion.loading import load_run
from torchdiffusion.data import load_fashion_mnist, save_image_tiles
from torchdiffusion.generate import generate
from torchdiffusion.metrics import fid_from_features, load_or_train_feature_net
from torchdiffusion.nn import count_parameters

CONFIGS = {"dit": "fashion_mnist_dit", "unet": "fashion_mnist"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-minutes", type=float, default=15.0)
    ap.add_argument("--num", type=int, default=2000, help="samples per model for FID")
    ap.add_argument("--sampler", default="ddim")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", default="outputs/bench_dit")
    a = ap.parse_args()
    out = Path(a.out)
    procs = {}
    for name, config in CONFIGS.items():  # own sessions: the kernel shares the CPU fairly between them
        cmd = [sys.executable, "-m", "torchdiffusion", "train", config, "--max-cpu-minutes", str(a.cpu_minutes),
               "--set", "train.num_threads=1", "--set", "train.sample_every=0", "--out", str(out / name),
               "--no-progress"]
        procs[name] = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)
    results = {}
    for name, p in procs.items():
        stdout, _ = p.communicate()
        if p.returncode:
            raise SystemExit(f"{name} training failed (exit {p.returncode})")
        results[name] = json.loads(stdout.strip().splitlines()[-1])

    torch.set_num_threads(2)
    xtr, ytr = load_fashion_mnist("train")
    xte, _ = load_fashion_mnist("test")
    net = load_or_train_feature_net("fashion_mnist", xtr, ytr)
    ref = net.embed(xte)
    for name, r in results.items():
        loaded = load_run(r["checkpoint"])
        model, cfg, meta = loaded.model, loaded.config, loaded.meta
        x, nfe = generate(model, (1, 28, 28), a.num, sampler=a.sampler, steps=a.steps, seed=0)
        x = x.clamp(-1, 1)
        save_image_tiles(x[:64], out / f"{name}.png")
        r.update(params=count_parameters(model.backbone), nfe=nfe, fid=fid_from_features(net.embed(x), ref),
                 images=r["step"] * cfg.train.batch_size)
        r["images_per_cpu_s"] = r["images"] / (60 * a.cpu_minutes)
    report = {"command": " ".join(sys.argv), "cpu_minutes": a.cpu_minutes, "num": a.num, "results": results}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(f"\n| backbone ({a.cpu_minutes:g} CPU-min, 1 thread each) | parameters | steps | images / CPU-s | "
          f"FID ({a.sampler}, {a.steps} steps) |")
    print("|---|---:|---:|---:|---:|")
    for name in CONFIGS:
        r = results[name]
        print(f"| {name} (`{CONFIGS[name]}.yaml`) | {r['params']:,} | {r['step']} | {r['images_per_cpu_s']:.1f} | "
              f"{r['fid']:.1f} |")


if __name__ == "__main__":
    main()
