"""Inverse problems on Fashion-MNIST with trained models: inpainting (centre and half masks), 4x super-resolution
(the conditional SR3 model, and `solve` with Downsample(4) over the unconditional model) against bicubic upsampling,
and deblurring (Gaussian blur, noisy measurement).

For each task and method the outputs of N test images are scored by
- FID against 2000 other test images, in the features of the library's feature network (metrics/features.py; the
  originals' own FID is the floor at this N),
- measurement consistency: RMS over measurement coordinates of A x_hat - y (0 for an exact fit; about noise_std
  for a noisy measurement),
- agreement: how often a separately trained classifier (the noise-conditional classifier of
  configs/fashion_mnist_classifier.yaml, read at its lowest noise level) gives the output the original's label.
The N test images and the 2000 reference images are disjoint slices of one fixed permutation of the test set; no
option is tuned here (library defaults; the SR model at augmentation level 0), so there is no tuning set.

    make bench-inverse   # or, step by step:
    nice -n 5 python -m torchdiffusion train fashion_mnist --max-steps 500 --set train.num_threads=1 --out runs/fmnist_base
    nice -n 5 python -m torchdiffusion train fashion_mnist_sr7 --max-steps 500 --set train.num_threads=1 --out runs/fmnist_sr7
    nice -n 5 python -m torchdiffusion train-classifier fashion_mnist_classifier --max-steps 500 --set train.num_threads=1 \\
        --out runs/fmnist_clf
    nice -n 5 python -m torchdiffusion train-features fashion_mnist --out runs/features-fashion_mnist.safetensors
    nice -n 5 python benchmarks/inverse_fmnist.py --model runs/fmnist_base --sr runs/fmnist_sr7 --classifier runs/fmnist_clf \\
        --features runs/features-fashion_mnist.safetensors --num 200 --methods ddrm --sr-methods ddrm,pigdm --figures docs/img

Figures: one PNG per task, rows = measurement, each method's output, original (8 test images per row).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from torchdiffusion.data import load_dataset, save_image_tiles
from torchdiffusion.inverse import Blur, Downsample, Mask, Operator, gaussian_kernel, solve
from torchdiffusion.generate import generate
from torchdiffusion.inverse.superres import downsample_to, upscale
from torchdiffusion.loading import load_run
from torchdiffusion.metrics import fid_from_features, load_feature_net

Tensor = torch.Tensor
SHAPE = (1, 28, 28)
REFERENCE = 2000  # test images FID compares against (disjoint from the N scored ones)


def centre_mask() -> Tensor:
    """1 = observed: a 14 x 14 hole in the middle of the 28 x 28 image."""
    m = torch.ones(SHAPE)
    m[:, 7:21, 7:21] = 0
    return m


def half_mask() -> Tensor:
    """1 = observed: the left half; the right half is missing."""
    m = torch.ones(SHAPE)
    m[:, :, 14:] = 0
    return m


def tasks() -> dict[str, tuple[Operator, float]]:
    """Task name -> (operator, noise_std)."""
    return {"sr4": (Downsample(4), 0.0),
            "inpaint_centre": (Mask(centre_mask()), 0.0),
            "inpaint_half": (Mask(half_mask()), 0.0),
            "deblur": (Blur(gaussian_kernel(9, 2.0)), 0.05)}


def shown(task: str, y: Tensor) -> Tensor:
    """The measurement as a 28 x 28 picture: low resolution by nearest neighbour (a masked y shows its missing
    pixels as 0, mid-grey)."""
    return F.interpolate(y, size=SHAPE[1:], mode="nearest") if task == "sr4" else y


def bicubic(y: Tensor) -> Tensor:
    """Bicubic upsampling of the 7 x 7 measurement to 28 x 28 (the baseline SR must beat)."""
    return F.interpolate(y, size=SHAPE[1:], mode="bicubic", align_corners=False).clamp(-1, 1)


def chunks(fn: Callable[[Tensor, int], Tensor], y: Tensor, size: int) -> Tensor:
    """fn over row chunks of y (fn(chunk, first row index)), concatenated."""
    return torch.cat([fn(y[i:i + size], i) for i in range(0, len(y), size)])


def wait_for(path: str, minutes: float) -> None:
    """Wait up to `minutes` for a file another job is still writing (the feature network's training)."""
    deadline = time.monotonic() + 60 * minutes
    while not Path(path).is_file() and time.monotonic() < deadline:
        time.sleep(10)
    if not Path(path).is_file():
        raise SystemExit(f"{path}: no such file (train it with `torchdiffusion train-features fashion_mnist --out ...`)")


def cascade_outputs(a: argparse.Namespace, base, sr) -> list[tuple[str, Tensor, float]]:
    """A cascade (Ho et al. 2021): num base samples (ipndm, sr-steps), pooled to 7 x 7, super-resolved at each
    augmentation level: (name, images, CPU seconds) of the base samples, their low resolution and each cascade."""
    t0 = time.process_time()
    x, _ = generate(base, SHAPE, a.num, sampler="ipndm", steps=a.sr_steps, seed=10_000)
    x = x.clamp(-1, 1)
    out = [("base model alone", x, time.process_time() - t0)]
    low = downsample_to(x, 7)
    out.append(("pooled to 7x7", F.interpolate(low, size=SHAPE[1:], mode="nearest"), 0.0))
    for level in (float(v) for v in a.cascade_aug.split(",")):
        t0 = time.process_time()
        up = upscale(sr, low, sampler="ipndm", steps=a.sr_steps, aug_sigma=level, seed=20_000).clamp(-1, 1)
        out.append((f"base -> 7x7 -> SR3, aug_sigma {level:g}", up, time.process_time() - t0))
        print(json.dumps({"task": "cascade", "method": out[-1][0], "cpu_seconds": round(out[-1][2], 1)}),
              file=sys.stderr, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="unconditional Fashion-MNIST run (fashion_mnist.yaml)")
    ap.add_argument("--sr", required=True, help="super-resolution run (fashion_mnist_sr7.yaml)")
    ap.add_argument("--classifier", required=True, help="train-classifier run (fashion_mnist_classifier.yaml)")
    ap.add_argument("--features", required=True, help="feature network .safetensors (train-features --out)")
    ap.add_argument("--wait-minutes", type=float, default=0.0,
                    help="wait this long for --features to appear (read only after every output is drawn)")
    ap.add_argument("--num", type=int, default=200, help="test images per task")
    ap.add_argument("--nfe", type=int, default=30, help="denoiser calls per image for solve's methods")
    ap.add_argument("--sr-steps", type=int, default=20, help="ipndm steps of the SR model (and the cascade's base)")
    ap.add_argument("--methods", default="ddrm,pigdm", help="solve methods run on every task")
    ap.add_argument("--sr-methods", default=None, help="solve methods of the 4x super-resolution task (default --methods)")
    ap.add_argument("--cascade-aug", default="0,0.1",
                    help="augmentation levels of the cascade (base samples pooled to 7 x 7, then the SR model); "
                         "'' skips the cascade")
    ap.add_argument("--tasks", default=",".join(tasks()), help="tasks to run (default: all)")
    ap.add_argument("--smc-particles", type=int, default=8, help="particles per image of the smc method")
    ap.add_argument("--max-cpu-minutes", type=float, default=20.0, help="skip the remaining runs past this")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--figures", default=None, help="folder for inverse_<task>.png")
    ap.add_argument("--json", default="outputs/inverse_fmnist.json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    start = time.process_time()

    x_test, y_test = load_dataset("fashion_mnist", split="test")
    perm = torch.randperm(len(x_test), generator=torch.Generator().manual_seed(0))
    pick, ref = perm[:a.num], perm[a.num:a.num + REFERENCE]
    x0, labels = x_test[pick].float(), y_test[pick]
    base, sr, clf = load_run(a.model), load_run(a.sr), load_run(a.classifier)

    # every output first (task, method, images, operator, y, CPU seconds); scores once the feature network is there
    drawn, figures = [], {}
    chosen = a.tasks.split(",")
    unknown = sorted(set(chosen) - set(tasks()))
    if unknown:
        raise SystemExit(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(tasks())}")
    for task, (op, noise_std) in ((t, tasks()[t]) for t in chosen):
        g = torch.Generator().manual_seed(1)
        y = op(x0) + noise_std * torch.randn(op(x0).shape, generator=g)
        runs: dict[str, Callable[[], Tensor]] = {}
        if task == "sr4":
            runs["bicubic"] = lambda: bicubic(y)
            runs["SR3 model"] = lambda: chunks(lambda c, i: upscale(sr.model, c, sampler="ipndm", steps=a.sr_steps,
                                                                    seed=i), y, a.batch)
        if task == "deblur":
            runs["measurement"] = lambda: y
        for m in ((a.sr_methods or a.methods) if task == "sr4" else a.methods).split(","):
            options = {"particles": a.smc_particles} if m == "smc" else {}
            name = f"solve {m}" + (f" ({a.smc_particles} particles)" if m == "smc" else "")
            runs[name] = (lambda m=m, options=options: chunks(lambda c, i: solve(
                base.model, c, op, noise_std=noise_std, method=m, nfe=a.nfe,
                generator=torch.Generator().manual_seed(10 + i), **options), y, a.batch))
        shown_rows = [shown(task, y[:8]).clamp(-1, 1)]
        for name, fn in runs.items():
            spent = (time.process_time() - start) / 60
            if spent > a.max_cpu_minutes:
                drawn.append((task, name, None, op, y, f"CPU budget spent ({spent:.1f} min)"))
                continue
            t0 = time.process_time()
            out = fn().detach().float().clamp(-1, 1)
            drawn.append((task, name, out, op, y, time.process_time() - t0))
            if name != "measurement":  # already the figure's first row
                shown_rows.append(out[:8])
            print(json.dumps({"task": task, "method": name, "cpu_seconds": round(drawn[-1][-1], 1)}),
                  file=sys.stderr, flush=True)
        drawn.append((task, "original", x0, op, y, 0.0))
        if a.figures:
            path = Path(a.figures) / f"inverse_{task}.png"
            save_image_tiles(torch.cat(shown_rows + [x0[:8]]), path, nrow=8)
            figures[task] = {"path": str(path), "rows": ["measurement", *[d[1] for d in drawn if d[0] == task and d[2]
                                                                          is not None and d[1] != "measurement"]]}
    cascade = cascade_outputs(a, base.model, sr.model) if a.cascade_aug and \
        (time.process_time() - start) / 60 <= a.max_cpu_minutes else []
    if cascade and a.figures:
        path = Path(a.figures) / "inverse_cascade.png"
        save_image_tiles(torch.cat([x[:8] for _, x, _ in cascade]), path, nrow=8)
        figures["cascade"] = {"path": str(path), "rows": [name for name, _, _ in cascade]}

    wait_for(a.features, a.wait_minutes)
    net = load_feature_net(a.features)[0]
    ref_feats = net.embed(x_test[ref].float())
    clf_sigma = float(clf.model.sigma_min)
    rows = []
    for task, name, x, op, y, cpu in drawn:
        if x is None:
            rows.append({"task": task, "method": name, "skipped": cpu})
            continue
        with torch.no_grad():
            logits = torch.cat([clf.model.raw_ve(x[i:i + 500], clf_sigma) for i in range(0, len(x), 500)])
            resid = (op(x) - y).flatten(1)
        rows.append({"task": task, "method": name, "fid": fid_from_features(net.embed(x), ref_feats),
                     "consistency": float(resid.pow(2).mean(1).sqrt().mean()),
                     "agreement": float((logits.argmax(1) == labels).float().mean()), "cpu_seconds": round(cpu, 1)})
    for name, x, cpu in cascade:
        if name != "pooled to 7x7":
            rows.append({"task": "cascade", "method": name, "fid": fid_from_features(net.embed(x), ref_feats),
                         "cpu_seconds": round(cpu, 1)})

    cpu = (time.process_time() - start) / 60
    print(f"\n{a.num} test images per task; FID against {REFERENCE} other test images; solve at {a.nfe} NFE; "
          f"SR model ipndm {a.sr_steps} steps; CPU time {cpu:.1f} min ({platform.processor() or platform.machine()})\n")
    print("| task | method | FID | consistency (RMS A x - y) | classifier agreement | CPU s |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        if "skipped" in r:
            print(f"| {r['task']} | {r['method']} | skipped: {r['skipped']} | | | |")
        elif "consistency" not in r:  # the cascade: no measurement, no label
            print(f"| {r['task']} | {r['method']} | {r['fid']:.2f} | - | - | {r['cpu_seconds']:.0f} |")
        else:
            print(f"| {r['task']} | {r['method']} | {r['fid']:.2f} | {r['consistency']:.3f} | {r['agreement']:.3f} | "
                  f"{r['cpu_seconds']:.0f} |")
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    with open(a.json, "w") as f:
        json.dump({"command": " ".join(sys.argv), "cpu_minutes": round(cpu, 2), "model": base.meta["path"],
                   "model_step": base.meta["step"], "sr": sr.meta["path"], "sr_step": sr.meta["step"],
                   "classifier": clf.meta["path"], "classifier_step": clf.meta["step"], "rows": rows,
                   "figures": figures}, f, indent=2)


if __name__ == "__main__":
    main()
