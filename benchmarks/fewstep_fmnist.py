"""Few-step students of a Fashion-MNIST teacher: FID of 1000 samples at 1, 2 and 4 network evaluations per method,
next to the teacher at 2 and 20 (issue 15's benchmark; this machine's CPU, one thread per process).

Steps, each a `torchdiffusion` command (so the script measures what a user runs), resumable since every command is:

  1. teacher: `train fashion_mnist --max-cpu-minutes TEACHER` (configs/fashion_mnist.yaml);
  2. each method: `distill TEACHER --method M --max-cpu-minutes PER_METHOD` (progressive also keeps its 2-step
     round's student, OUT/rounds/steps-2, scored at 2 calls; its final 1-step student at 1 and 4);
  3. `eval RUN --metrics fid --num 1000` with the student's own sampler (consistency, ddim_fewstep) at 1, 2, 4
     calls, and the teacher with its ipndm at 2 and 20; a 2-call sample grid per method (PNG).

The goal of the issue: the default method's 2-call FID at most 1.5x the teacher's 20-call FID, its 1-call FID at
most 2.5x. Tables are printed as Markdown with the command and machine.

    nice -n 5 python benchmarks/fewstep_fmnist.py --teacher-minutes 30 --method-minutes 30 --out outputs/fewstep
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

METHODS = ("progressive", "consistency", "reflow")


def td(*args: str) -> dict:
    """Run one torchdiffusion command; its last stdout line is JSON."""
    cmd = [sys.executable, "-c", "import sys; from torchdiffusion.cli import main; sys.exit(main())", *args]
    print("$ torchdiffusion " + " ".join(args), flush=True)
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()
    return json.loads(out[-1]) if out else {}


def fid(run: Path, sampler: str, nfe: list[int], out: Path, num: int) -> dict[int, float]:
    """FID by `eval` at each budget, {nfe: fid}."""
    td("eval", str(run), "--metrics", "fid", "--num", str(num), "--samplers", sampler,
       "--nfe", ",".join(map(str, nfe)), "--out", str(out), "--no-plots", "--no-progress")
    report = json.loads((out / "report.json").read_text())
    return {int(r["nfe_requested"]): fid_value(r["fid"]) for r in report["results"] if "fid" in r}


def fid_value(entry: object) -> float:
    """A report's FID entry: a number, or a mapping holding it under "value"."""
    return float(entry["value"] if isinstance(entry, dict) else entry)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teacher-minutes", type=float, default=30.0, help="CPU minutes of the teacher's training")
    ap.add_argument("--method-minutes", type=float, default=30.0, help="CPU minutes of each distillation")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--num", type=int, default=1000, help="samples per FID")
    ap.add_argument("--progressive-steps", type=int, default=3000,
                    help="progressive distillation's schedule (its rounds share it; set it to what fits the "
                         "CPU budget, or the last rounds never run)")
    ap.add_argument("--out", default="outputs/fewstep_fmnist")
    args = ap.parse_args()
    out = Path(args.out)
    start = time.time()
    teacher = out / "teacher"
    td("train", "fashion_mnist", "--max-cpu-minutes", str(args.teacher_minutes), "--set", "train.num_threads=1",
       "--out", str(teacher), "--no-progress")
    rows = {"teacher (ipndm)": fid(teacher, "ipndm", [2, 20], out / "eval-teacher", args.num)}
    for m in args.methods.split(","):
        run = out / m
        steps = args.progressive_steps if m == "progressive" else 100_000  # the others stop at the CPU budget
        td("distill", str(teacher), "--method", m, "--max-cpu-minutes", str(args.method_minutes), "--out", str(run),
           "--no-progress", "--max-steps", str(steps))
        sampler = "consistency" if m == "consistency" else "ddim_fewstep"
        scores = fid(run, sampler, [1, 2, 4], out / f"eval-{m}", args.num)
        if m == "progressive":  # the 2-step round's own student at 2 calls
            scores[2] = fid(run / "rounds" / "steps-2", sampler, [2], out / f"eval-{m}-2", args.num)[2]
        rows[m] = scores
        td("sample", str(run), "--steps", "2", "--num", "64", "--tiles", str(out / f"grid-{m}.png"))
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; teacher "
          f"{args.teacher_minutes} CPU-min, {args.method_minutes} CPU-min per method; wall "
          f"{(time.time() - start) / 60:.0f} min\n")
    print("| model | FID 1 call | FID 2 calls | FID 4 calls | FID 20 calls |")
    print("|---|---|---|---|---|")
    for name, s in rows.items():
        print(f"| {name} | " + " | ".join(f"{s[n]:.1f}" if n in s else "-" for n in (1, 2, 4, 20)) + " |")


if __name__ == "__main__":
    main()
