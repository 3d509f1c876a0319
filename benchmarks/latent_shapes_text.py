"""Text-to-image on the 64x64 captioned shapes, latent against pixel diffusion at equal CPU time (issue 16).

The latent recipe gets an autoencoder of AE CPU-minutes (configs/shapes_vae.yaml) plus a text-conditional latent
model of LDM CPU-minutes (configs/shapes_text_ldm.yaml); the pixel model (configs/shapes_text64.yaml, the same data,
captions, loss and guidance on 64x64 pixels) gets their sum. Both are scored by the attribute accuracies of
benchmarks/shapes_text.py (shape, colour, size and position read back from the decoded canvas) on seen and held-out
colour x shape captions at each guidance scale, with the sampling CPU time of each.

Every training is a `torchdiffusion` command (what a user runs), one thread each, skipped on a rerun once done (a
marker file), since --max-cpu-minutes counts per invocation; the pixel model trains while the latent recipe does.

    python benchmarks/latent_shapes_text.py --ae-minutes 15 --ldm-minutes 25 --out outputs/latent_shapes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from shapes_text import attribute_rows, print_table
from torchdiffusion.loading import load_run


def td(*args: str) -> subprocess.Popen:
    """Start one torchdiffusion command."""
    print("$ torchdiffusion " + " ".join(args), flush=True)
    cmd = [sys.executable, "-c", "import sys; from torchdiffusion.cli import main; sys.exit(main())", *args]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL)


def finish(proc: subprocess.Popen | None, marker: Path) -> None:
    """Wait for a training command and mark it done, failing the benchmark if it failed."""
    if proc is not None:
        if proc.wait():
            sys.exit(f"{' '.join(map(str, proc.args[3:5]))} failed; its message is above")
        marker.touch()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ae-minutes", type=float, default=15.0, help="CPU minutes of the autoencoder")
    ap.add_argument("--ldm-minutes", type=float, default=25.0, help="CPU minutes of the latent model")
    ap.add_argument("--num", type=int, default=100, help="prompts per caption split")
    ap.add_argument("--scales", default="1,3", help="guidance scales")
    ap.add_argument("--sampler", default="unipc")
    ap.add_argument("--nfe", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("outputs/latent_shapes"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    a.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    one_thread = ["--set", "train.num_threads=1", "--no-progress"]
    ae, ldm, pixel = a.out / "vae", a.out / "ldm", a.out / "pixel"
    pixel_minutes = a.ae_minutes + a.ldm_minutes

    pixel_job = None
    if not (a.out / "pixel.done").exists():
        pixel_job = td("train", "shapes_text64", "--max-cpu-minutes", str(pixel_minutes), "--out", str(pixel),
                       *one_thread)
    if not (a.out / "vae.done").exists():
        finish(td("train-autoencoder", "shapes_vae", "--max-cpu-minutes", str(a.ae_minutes), "--out", str(ae),
                  *one_thread), a.out / "vae.done")
    if not (a.out / "ldm.done").exists():
        finish(td("train", "shapes_text_ldm", "--set", f"autoencoder={ae}", "--max-cpu-minutes",
                  str(a.ldm_minutes), "--out", str(ldm), *one_thread), a.out / "ldm.done")
    finish(pixel_job, a.out / "pixel.done")

    scales = [float(v) for v in a.scales.split(",")]
    report = {"command": " ".join(sys.argv), "machine": f"{platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} CPUs, 1 thread per process, torch {torch.__version__}",
              "budgets_cpu_minutes": {"autoencoder": a.ae_minutes, "latent": a.ldm_minutes, "pixel": pixel_minutes},
              "sampler": a.sampler, "nfe": a.nfe, "models": {}}
    for name, run in (("pixel", pixel), ("latent", ldm)):
        loaded = load_run(run)
        rows = attribute_rows(loaded, a.num, scales, a.sampler, a.nfe, tiles=str(a.out / f"tiles-{name}"))
        report["models"][name] = {"step": loaded.meta["step"], "rows": rows}
    report["wall_minutes"] = (time.time() - start) / 60
    (a.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{report['machine']}; autoencoder {a.ae_minutes} + latent {a.ldm_minutes} CPU-min against pixel "
          f"{pixel_minutes} CPU-min; {a.num} prompts per split, {a.sampler} {a.nfe} steps\n")
    for name, m in report["models"].items():
        print(f"\n{name} ({m['step']} training steps):\n")
        print_table(m["rows"])


if __name__ == "__main__":
    main()
