"""Sampler accuracy per NFE on a trained model: distance to a fine-step solution of the same model's flow map.

The Gaussian-mixture benchmark (`samplers_gmm.py`) has an exact denoiser; this one asks the same question of a
network, where no closed form exists: every deterministic method, on its default grid at each NFE, against two
fine-step solves of different methods (their distance to each other bounds the reference's own error).

    .venv/bin/python benchmarks/samplers_trained.py --model runs/fmnist --num 32 --nfe 10,20,50
"""

from __future__ import annotations

import argparse
import time

import torch

from torchdiffusion.loading import load_run
from torchdiffusion.generate import start_noise
from torchdiffusion.sampling import METHODS, sample


def rms(a: torch.Tensor, b: torch.Tensor) -> float:
    """Root-mean-square distance per pixel, averaged over samples (images in [-1, 1])."""
    return (a - b).reshape(len(a), -1).pow(2).mean(1).sqrt().mean().item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="run directory or checkpoint")
    ap.add_argument("--num", type=int, default=32, help="start noises")
    ap.add_argument("--nfe", default="10,20,50")
    ap.add_argument("--ref-nfe", type=int, default=500, help="calls of each fine-step reference solve")
    ap.add_argument("--methods", default=None, help="comma-separated (default: every fixed-step ODE method)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    loaded = load_run(a.model)
    model, cfg, meta = loaded.model, loaded.config, loaded.meta
    x = start_noise(model, loaded.data_shape, a.num, a.seed)
    nfes = [int(n) for n in a.nfe.split(",")]
    methods = a.methods.split(",") if a.methods else [
        n for n, m in METHODS.items() if m.kind == "ODE" and m.evals_per_step is not None]
    print(f"model {meta['path']} (step {meta.get('step')}), {a.num} starts, sigma "
          f"{model.sigma_min:g}-{model.sigma_max:g}")
    with torch.no_grad():
        t0 = time.perf_counter()
        # the fine grid runs down to the model's sigma_min (tail=0), then one last D to sigma 0
        ref = sample(model, x, method="dpmpp_3m", nfe=a.ref_nfe, tail=0)
        ref2 = sample(model, x, method="dpmpp_2m", nfe=a.ref_nfe, tail=0)
        print(f"references: dpmpp_3m vs dpmpp_2m at {a.ref_nfe} calls differ by {rms(ref, ref2):.2e} "
              f"({time.perf_counter() - t0:.0f} s)")
        rows = {}
        for name in methods:
            rows[name] = [rms(sample(model, x, method=name, nfe=n), ref) for n in nfes]
    print(f"\n| method | " + " | ".join(f"NFE {n}" for n in nfes) + " |")
    print("|---|" + "---:|" * len(nfes))
    best = [min(r[j] for r in rows.values()) for j in range(len(nfes))]
    for name, r in rows.items():
        cells = [f"**{e:.2e}**" if e == best[j] else f"{e:.2e}" for j, e in enumerate(r)]
        print(f"| {name} | " + " | ".join(cells) + " |")
    for j, n in enumerate(nfes):
        order = sorted(rows, key=lambda k: rows[k][j])
        print(f"NFE {n}: most accurate {order[0]}, then {', '.join(order[1:4])}")


if __name__ == "__main__":
    main()
