"""Latent against pixel diffusion on Fashion-MNIST at equal CPU time (issue 16's benchmark; one thread per process).

The latent recipe gets an autoencoder of AE CPU-minutes (configs/fashion_mnist_vae.yaml) plus a latent model of
LDM CPU-minutes (configs/fashion_mnist_ldm.yaml); the pixel model (configs/fashion_mnist.yaml) gets their sum.
Both are scored by `eval --metrics fid --num NUM` at 20 UniPC steps (the configs' sampler) on the library's feature
network, and timed in this process: CPU seconds per image of a 20-step batch, the latent model's decoding included.
Goal of the issue: the latent model's FID at most 1.3x the pixel model's, its 20-step sampling at least 3x faster.

Every step is a `torchdiffusion` command (what a user runs) and is skipped on a rerun once done (a marker file),
since --max-cpu-minutes counts per invocation. An existing autoencoder run (--autoencoder) stands for the first step;
an existing pixel run trained for M CPU-minutes (--pixel-from RUN --pixel-from-minutes M) is copied and resumed for
the rest of the pixel budget, so a 30-minute Fashion-MNIST teacher of benchmarks/fewstep_fmnist.py can be reused.

    nice -n 5 python benchmarks/latent_fmnist.py --ae-minutes 20 --ldm-minutes 30 --out outputs/latent_fmnist
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from torchdiffusion.data import save_image_tiles
from torchdiffusion.generate import start_noise
from torchdiffusion.loading import load_run
from torchdiffusion.sampling import sample


def td(*args: str) -> None:
    """Run one torchdiffusion command, failing the benchmark if it fails."""
    print("$ torchdiffusion " + " ".join(args), flush=True)
    cmd = [sys.executable, "-c", "import sys; from torchdiffusion.cli import main; sys.exit(main())", *args]
    if subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode:
        sys.exit(f"torchdiffusion {args[0]} failed; its message is above")


def fid(run: Path, out: Path, num: int) -> float:
    """FID of `num` samples at 20 UniPC steps, by `eval` (a rerun reads the report an earlier run wrote)."""
    if not (out / "report.json").exists():
        td("eval", str(run), "--metrics", "fid", "--num", str(num), "--samplers", "unipc", "--nfe", "20",
           "--out", str(out), "--no-plots", "--no-progress")
    row = json.loads((out / "report.json").read_text())["results"][0]
    value = row["fid"]
    return float(value["value"] if isinstance(value, dict) else value)


@torch.no_grad()
def cpu_seconds_per_image(run: Path, num: int, repeats: int, grid: Path) -> float:
    """Fastest of `repeats` 20-step UniPC batches of `num` images, decoding included, in CPU seconds per image."""
    loaded = load_run(run)
    x = start_noise(loaded.model, loaded.data_shape, num, seed=0)
    best = float("inf")
    for _ in range(repeats):
        c0 = time.process_time()
        images = loaded.decode(sample(loaded.model, x, method="unipc", nfe=20))
        best = min(best, time.process_time() - c0)
    save_image_tiles(images[:64].clamp(-1, 1), grid, nrow=8)
    return best / num


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ae-minutes", type=float, default=20.0, help="CPU minutes of the autoencoder")
    ap.add_argument("--ldm-minutes", type=float, default=30.0, help="CPU minutes of the latent model")
    ap.add_argument("--autoencoder", type=Path, default=None,
                    help="an autoencoder run trained for --ae-minutes, used instead of training one")
    ap.add_argument("--pixel-from", type=Path, default=None, help="a fashion_mnist run to continue for the pixel model")
    ap.add_argument("--pixel-from-minutes", type=float, default=0.0, help="CPU minutes --pixel-from was trained")
    ap.add_argument("--num", type=int, default=1000, help="samples per FID")
    ap.add_argument("--time-batch", type=int, default=250, help="images per timed batch")
    ap.add_argument("--out", type=Path, default=Path("outputs/latent_fmnist"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    a.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    one_thread = ["--set", "train.num_threads=1", "--no-progress"]

    ae = a.autoencoder or a.out / "vae"
    if a.autoencoder is None and not (a.out / "vae.done").exists():
        td("train-autoencoder", "fashion_mnist_vae", "--max-cpu-minutes", str(a.ae_minutes), "--out", str(ae),
           *one_thread)
        (a.out / "vae.done").touch()
    ldm = a.out / "ldm"
    if not (a.out / "ldm.done").exists():
        td("train", "fashion_mnist_ldm", "--set", f"autoencoder={ae}", "--max-cpu-minutes", str(a.ldm_minutes),
           "--out", str(ldm), *one_thread)
        (a.out / "ldm.done").touch()
    pixel, pixel_minutes = a.out / "pixel", a.ae_minutes + a.ldm_minutes
    if not (a.out / "pixel.done").exists():
        if a.pixel_from is not None and not pixel.exists():
            shutil.copytree(a.pixel_from, pixel, ignore=shutil.ignore_patterns(".lock", "tb"))
        rest = pixel_minutes - (a.pixel_from_minutes if a.pixel_from is not None else 0.0)
        td("train", "fashion_mnist", "--max-cpu-minutes", str(rest), "--out", str(pixel), *one_thread)
        (a.out / "pixel.done").touch()

    rows = {}
    for name, run in (("pixel", pixel), ("latent", ldm)):
        rows[name] = {"fid": fid(run, a.out / f"eval-{name}", a.num),
                      "cpu_s_per_image": cpu_seconds_per_image(run, a.time_batch, 2, a.out / f"grid-{name}.png"),
                      "step": load_run(run).meta["step"]}
    p, lt = rows["pixel"], rows["latent"]
    report = {"command": " ".join(sys.argv), "machine": f"{platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} CPUs, 1 thread per process, torch {torch.__version__}",
              "budgets_cpu_minutes": {"autoencoder": a.ae_minutes, "latent": a.ldm_minutes, "pixel": pixel_minutes},
              "rows": rows, "fid_ratio": lt["fid"] / p["fid"],
              "speedup": p["cpu_s_per_image"] / lt["cpu_s_per_image"], "wall_minutes": (time.time() - start) / 60}
    (a.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{report['machine']}; autoencoder {a.ae_minutes} + latent {a.ldm_minutes} CPU-min against pixel "
          f"{pixel_minutes} CPU-min; FID of {a.num} samples at 20 UniPC steps\n")
    print("| model | training steps | FID | CPU ms / image (20 steps) |")
    print("|---|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['step']} | {r['fid']:.2f} | {1000 * r['cpu_s_per_image']:.1f} |")
    print(f"\nlatent / pixel FID: {report['fid_ratio']:.2f}x (goal <= 1.3x); "
          f"sampling speed-up: {report['speedup']:.1f}x (goal >= 3x)")


if __name__ == "__main__":
    main()
