"""Guidance curves on Fashion-MNIST: accuracy on the requested class and per-class diversity vs guidance scale.

A class-conditional model (configs/fashion_mnist_cond.yaml) is sampled for every class at each classifier-free
guidance scale w and, with a noise-conditional classifier (configs/fashion_mnist_classifier.yaml), at each
classifier-guidance scale s. A separately trained classifier (the feature network of the FID benchmark, trained on
the Fashion-MNIST training set; never the guiding classifier) reads back the class. Diversity is the mean pairwise
distance of the feature embeddings of samples of the same class, divided by the same figure for real test images
of that class, averaged over classes (1 = as diverse as the data). FID against the test set is given too.

    .venv/bin/python -m torchdiffusion train fashion_mnist_cond --max-cpu-minutes 20 --set train.num_threads=1 \\
        --out runs/fmnist_cond20
    .venv/bin/python -m torchdiffusion train-classifier fashion_mnist_classifier --max-cpu-minutes 8 \\
        --set train.num_threads=1 --out runs/fmnist_clf
    .venv/bin/python benchmarks/guidance_fmnist.py --model runs/fmnist_cond20 --classifier runs/fmnist_clf \\
        --per-class 20 --scales 0,1,1.5,2,3,4 --classifier-scales 0.5,1,2,4,8 --classifier-sigma-max 10 \\
        --plot docs/img/guidance_fmnist.png

--plot draws accuracy and diversity against the scale, one line per kind of guidance (the classifier's scale 0 is
the null-label model, CFG's w = 0).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from torchdiffusion.loading import load_run
from torchdiffusion.conditioning import GuidanceRecipe
from torchdiffusion.data import load_dataset
from torchdiffusion.generate import generate
from torchdiffusion.metrics import fid_from_features, load_or_train_feature_net

K = 10


def diversity(feats: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean pairwise L2 distance of features within each class, (K,)."""
    return torch.stack([torch.pdist(feats[labels == k]).mean() for k in range(K)])


def score(x: torch.Tensor, y: torch.Tensor, net, real_div: torch.Tensor, real_feats: torch.Tensor) -> dict:
    with torch.no_grad():
        logits = torch.cat([net(x[i:i + 500]) for i in range(0, len(x), 500)])
        feats = net.embed(x)
    return {"accuracy": (logits.argmax(1) == y).float().mean().item(),
            "diversity": (diversity(feats, y) / real_div).mean().item(),
            "fid": fid_from_features(feats, real_feats)}


def plot(rows: list[dict], path: str, title: str) -> None:
    """Accuracy on the requested class and diversity against the guidance scale, one line per kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    base = [r for r in rows if r["guidance"] == "cfg" and r["scale"] == 0]  # the null-label model: s = 0
    for kind in dict.fromkeys(r["guidance"] for r in rows):
        label = "classifier-free (w)" if kind == "cfg" else f"{kind} (s, null-label model)"
        own = [r for r in rows if r["guidance"] == kind]
        zero = base if kind != "cfg" and not any(r["scale"] == 0 for r in own) else []
        pts = sorted(own + zero, key=lambda r: r["scale"])
        for ax, key in zip(axes, ("accuracy", "diversity")):
            ax.plot([r["scale"] for r in pts], [r[key] for r in pts], "o-", label=label)
    axes[0].set(xlabel="guidance scale", ylabel="accuracy on the requested class", ylim=(0, 1.02))
    axes[1].set(xlabel="guidance scale", ylabel="within-class diversity (1 = data)")
    axes[1].axhline(1.0, color="gray", lw=0.8, ls="--")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--classifier", default=None)
    ap.add_argument("--per-class", type=int, default=50)
    ap.add_argument("--sampler", default="dpmpp_2m")
    ap.add_argument("--nfe", type=int, default=20)
    ap.add_argument("--scales", default="0,1,1.5,2,3,5")
    ap.add_argument("--classifier-scales", default="0,1,2,4,8")
    ap.add_argument("--out", default="outputs/guidance_fmnist.json")
    ap.add_argument("--plot", default=None, help="PNG of accuracy and diversity against the scale")
    ap.add_argument("--classifier-sigma-max", type=float, default=None,
                    help="also run the classifier scales with guidance only for sigma <= this (the recipe's interval)")
    a = ap.parse_args()
    torch.set_num_threads(2)
    xtr, ytr = load_dataset("fashion_mnist")
    xte, yte = load_dataset("fashion_mnist", split="test")
    net = load_or_train_feature_net("fashion_mnist", xtr, ytr)
    with torch.no_grad():
        real_feats = net.embed(xte)
    real_div = diversity(real_feats, yte)
    loaded = load_run(a.model)
    model, cfg, meta = loaded.model, loaded.config, loaded.meta
    n = a.per_class * K
    y = torch.arange(n) % K
    cond, null = {"class_labels": y}, {"class_labels": torch.full((n,), K)}
    rows = []

    def run(kind: str, scale: float, recipe: GuidanceRecipe) -> None:
        t0 = time.perf_counter()
        x, nfe = generate(model, (1, 28, 28), n, sampler=a.sampler, steps=a.nfe, seed=0, guidance=recipe)
        r = {"guidance": kind, "scale": scale, "nfe": nfe, "seconds": round(time.perf_counter() - t0, 1),
             **score(x.clamp(-1, 1), y, net, real_div, real_feats)}
        rows.append(r)
        print(json.dumps(r), file=sys.stderr, flush=True)

    for w in (float(v) for v in a.scales.split(",")):
        run("cfg", w, GuidanceRecipe(cond=cond, uncond=null, scale=w))
    if a.classifier:
        loaded = load_run(a.classifier)
        clf = loaded.model
        intervals = {"classifier": None}
        if a.classifier_sigma_max is not None:
            intervals[f"classifier, sigma <= {a.classifier_sigma_max:g}"] = (0.0, a.classifier_sigma_max)
        for kind, interval in intervals.items():
            for s in (float(v) for v in a.classifier_scales.split(",")):
                # the unconditional model (null label) guided by the classifier alone
                run(kind, s, GuidanceRecipe(cond=null, classifier=clf.raw_ve, classifier_labels=y,
                                            classifier_scale=s, interval=interval))
    title = (f"Model {meta['path']} (step {meta['step']}), {a.sampler} at {a.nfe} NFE, {a.per_class} samples per "
             f"class; readout classifier: the FID feature network.")
    print(f"\n{title}\n")
    if a.plot:  # a title that fits the figure: run folder, step, sampler
        run_name = Path(meta["path"]).parent.parent.name
        plot(rows, a.plot, f"{run_name} (step {meta['step']}), {a.sampler} {a.nfe} NFE, {a.per_class} samples per class")
    print("| guidance | scale | accuracy on requested class | diversity (1 = data) | FID |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['guidance']} | {r['scale']:g} | {r['accuracy']:.3f} | {r['diversity']:.3f} | {r['fid']:.1f} |")
    with open(a.out, "w") as f:
        json.dump({"command": " ".join(sys.argv), "checkpoint": meta["path"], "step": meta["step"], "rows": rows},
                  f, indent=2)


if __name__ == "__main__":
    main()
