"""Classifier-free guidance of a discrete image model, x0 tilt against transition tilt: class agreement, FID, CPU time.

A class-conditional D3PM run on Fashion-MNIST in grey levels (configs/fashion_mnist_d3pm.yaml) is sampled for every
class in turn at each guidance scale s, once per guidance mode (docs/discrete.md):

    x0          p_s(x0 | x_t, c) ∝ p(x0 | x_t, c)^s p(x0 | x_t)^(1 - s)      (Ho & Salimans 2022 on the x0 logits)
    transition  p_s(x_s | x_t, c) ∝ p(x_s | x_t, c)^s p(x_s | x_t)^(1 - s)  (Schiff et al. 2024, D-CFG)

s = 1 is the conditional model in both modes (the same ids), so it is sampled once. Every row starts from the same
seeds. Scored: the accuracy on the requested class of the project's clean Fashion-MNIST classifier (the feature
network of every Fashion-MNIST FID, metrics/features.py; trained on the 256-level training images, never on
samples), the FID on the same network against the 10,000 test images quantised to the run's grey levels, and the CPU
seconds per sample of this process. Two yardsticks on the same network: the accuracy on the quantised test images,
and the FID of as many quantised training images as samples per row (the floor of FID at that sample count).

    PYTHONPATH=src python benchmarks/discrete_guidance_fmnist.py --model runs/fm_d3pm --per-class 20 \\
        --scales 1,2,3,5 --steps 50 --max-cpu-minutes 4.5 --figure docs/figures/fashion_mnist_d3pm_guidance_modes.png
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import torch

from torchdiffusion.data import token_images
from torchdiffusion.data.quantized import load_fashion_mnist_levels
from torchdiffusion.discrete.generate import generate_tokens
from torchdiffusion.loading import load_run
from torchdiffusion.metrics.features import feature_net_path, load_feature_net
from torchdiffusion.metrics.fid import fid_from_features

K = 10  # Fashion-MNIST classes
MODES = ("x0", "transition")


@torch.no_grad()
def read_back(net, images: torch.Tensor, batch: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted classes (N,), features (N, D)) of images (N, 1, 28, 28) in [-1, 1]."""
    logits = torch.cat([net(images[i:i + batch]) for i in range(0, len(images), batch)])
    return logits.argmax(1), net.embed(images)


def figure(rows: list[dict], grids: dict[tuple[str, float], torch.Tensor], path: str, title: str) -> None:
    """One panel per mode; a row of one sample per class (T-shirt ... ankle boot) per guidance scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scales = sorted({r["scale"] for r in rows})
    fig, axes = plt.subplots(1, len(MODES), figsize=(2 + 5 * len(MODES), 0.6 + 0.55 * len(scales)))
    for ax, mode in zip(axes, MODES):
        strips = []
        for s in scales:  # (10, 1, 28, 28) in [-1, 1] -> one strip (28, 10 * 28) with a 2-pixel gap
            x = grids[(mode, s)]
            x = torch.nn.functional.pad(x, (1, 1, 1, 1), value=1.0)
            strips.append(torch.cat(list(x[:, 0]), dim=1))
        ax.imshow(((torch.cat(strips, 0) + 1) / 2).numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_yticks([30 * i + 15 for i in range(len(scales))], [f"s = {s:g}" for s in scales])
        ax.set_xticks([])
        ax.set_title(f"guidance mode: {mode}", fontsize=10)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="a class-conditional fashion_mnist_levels run (fashion_mnist_d3pm)")
    ap.add_argument("--per-class", type=int, default=50, help="samples per class and row")
    ap.add_argument("--scales", default="1,2,3,5", help="guidance scales s (1: the conditional model)")
    ap.add_argument("--steps", type=int, default=None, help="ancestral steps (default: the run's sample.steps)")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-cpu-minutes", type=float, default=20.0, help="start no new row past this CPU time")
    ap.add_argument("--figure", default=None, help="PNG: one sample per class, rows = scales, one panel per mode")
    ap.add_argument("--out", default=None, help="JSON of the rows")
    a = ap.parse_args()
    if a.per_class < 1 or a.batch_size < 1 or a.threads < 1 or not a.max_cpu_minutes > 0:
        sys.exit("--per-class, --batch-size, --threads and --max-cpu-minutes must be positive")
    torch.set_num_threads(a.threads)
    c_start = time.process_time()
    loaded = load_run(a.model)
    model, cfg = loaded.model, loaded.config
    if cfg.data.name != "fashion_mnist_levels" or int(getattr(model, "num_classes", 0)) != K:
        sys.exit(f"{a.model}: needs a class-conditional fashion_mnist_levels run (10 classes), got "
                 f"{cfg.data.name} with {getattr(model, 'num_classes', 0)} classes")
    levels = cfg.process.vocab_size
    steps = a.steps or cfg.sample.steps
    scales = [float(v) for v in a.scales.split(",")]
    path = feature_net_path("fashion_mnist")
    if not path.is_file():
        sys.exit(f"{path} is missing: train the Fashion-MNIST feature network first (`torchdiffusion train-features "
                 f"fashion_mnist`)")
    net = load_feature_net(path)[0].eval()
    n = a.per_class * K
    test_ids, test_y = load_fashion_mnist_levels("test", levels)
    test_images = token_images(cfg.data.name, test_ids, levels)
    test_pred, real_feats = read_back(net, test_images)
    train_ids, _ = load_fashion_mnist_levels("train", levels, limit=n)
    floor = fid_from_features(real_feats, read_back(net, token_images(cfg.data.name, train_ids, levels))[1])
    print(f"# {a.model} (step {loaded.meta['step']}), {levels} grey levels, ancestral {steps} steps, {n} samples per "
          f"row ({a.per_class} per class), {a.threads} thread(s), {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}", flush=True)
    print(f"# yardsticks: readout accuracy on the quantised test images {(test_pred == test_y).float().mean():.3f}; "
          f"FID of {n} quantised training images {floor:.1f}", flush=True)
    labels = torch.arange(n) % K
    rows, grids = [], {}
    plan = [(mode, s) for s in scales for mode in MODES if not (s == 1.0 and mode == "transition")]
    for mode, s in plan:
        if time.process_time() - c_start > 60 * a.max_cpu_minutes:
            print(f"# stopped at the CPU budget before {mode} s = {s:g}", file=sys.stderr)
            break
        c0 = time.process_time()
        ids, stats = generate_tokens(model, n, 784, steps=steps, seed=a.seed, batch_size=a.batch_size,
                                     class_labels=labels, guidance_scale=s, guidance_mode=mode)
        cpu = time.process_time() - c0
        images = token_images(cfg.data.name, ids, levels)
        pred, feats = read_back(net, images)
        both = ("x0", "transition") if s == 1.0 else (mode,)  # s = 1 is the conditional model in either mode
        for m in both:
            grids[(m, s)] = images[:K]
        row = {"mode": "both" if s == 1.0 else mode, "scale": s, "accuracy": (pred == labels).float().mean().item(),
               "fid": fid_from_features(real_feats, feats), "cpu_s_per_sample": cpu / n, "calls": stats["calls"]}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    print("| mode | scale s | accuracy on the requested class | FID | CPU s / sample |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['mode']} | {r['scale']:g} | {r['accuracy']:.3f} | {r['fid']:.1f} | {r['cpu_s_per_sample']:.2f} |")
    print(f"# total CPU {(time.process_time() - c_start) / 60:.1f} min")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"model": a.model, "step": loaded.meta["step"], "steps": steps, "per_class": a.per_class,
                       "fid_floor": floor, "rows": rows}, f, indent=1)
    if a.figure and rows:
        done = {r["scale"] for r in rows if r["mode"] != "x0"} & {r["scale"] for r in rows if r["mode"] != "transition"}
        shown = [r for r in rows if r["scale"] in done]
        figure(shown, grids, a.figure, f"fashion_mnist_d3pm (step {loaded.meta['step']}), ancestral {steps} steps, "
                                       f"one sample per class (T-shirt ... ankle boot), same seeds in every row")


if __name__ == "__main__":
    main()
