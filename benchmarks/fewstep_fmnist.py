"""Few-step students of a Fashion-MNIST teacher: FID of 1000 samples at 1, 2 and 4 network evaluations per method,
next to the teacher at 2 and 20 (issue 15's benchmark; this machine's CPU, one thread per process).

Steps, each a `torchdiffusion` command (so the script measures what a user runs), resumable since every command is:

  1. teacher: `train fashion_mnist --max-cpu-minutes TEACHER` (configs/fashion_mnist.yaml);
  2. each method: `distill TEACHER --method M --max-cpu-minutes PER_METHOD` (progressive with a schedule sized to
     the budget: 1,000 steps in 3 rounds, 8 -> 4 -> 2 -> 1 calls; its final student is scored like the others, and
     its 2-step round's student, OUT/rounds/steps-2, at 2 calls as a row of its own);
  3. `eval RUN --metrics fid --num 1000` with the student's own sampler (consistency, ddim_fewstep) at 1, 2, 4
     calls, and the teacher with its config's sampler (unipc) at 2 and 20; a 2-call sample grid per method (PNG).
     `--jobs 3` runs the three distillations at once.

The goal of the issue: the default method's 2-call FID at most 1.5x the teacher's 20-call FID, its 1-call FID at
most 2.5x. Tables are printed as Markdown with the command and machine.

    nice -n 5 python benchmarks/fewstep_fmnist.py --teacher-minutes 30 --method-minutes 30 --jobs 3 \
        --out outputs/fewstep

A smoke run of the whole pipeline (parsing of eval's report, grids; about 8 minutes of wall time, meaningless FIDs):

    python benchmarks/fewstep_fmnist.py --teacher-minutes 0.4 --method-minutes 0.3 --num 64 --methods progressive \
        --progressive-steps 6 --progressive-start-steps 4 --out /tmp/fewstep_smoke

A progressive run whose budget ends before its last round is scored by its last student, with a note.
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


def command(*args: str) -> list[str]:
    print("$ torchdiffusion " + " ".join(args), flush=True)
    return [sys.executable, "-c", "import sys; from torchdiffusion.cli import main; sys.exit(main())", *args]


ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}  # torch's intra-op pool: one thread per process


def td(*args: str) -> dict:
    """Run one torchdiffusion command; its last stdout line is JSON."""
    done = subprocess.run(command(*args), stdout=subprocess.PIPE, text=True, env=ONE_THREAD)
    if done.returncode:
        sys.exit(f"torchdiffusion {args[0]} failed (exit {done.returncode}); its message is above")
    out = done.stdout.strip().splitlines()
    return json.loads(out[-1]) if out else {}


def td_parallel(jobs: list[tuple[str, ...]]) -> None:
    """Run several torchdiffusion commands at once (one thread each), failing if any fails."""
    procs = [(args, subprocess.Popen(command(*args), stdout=subprocess.DEVNULL, env=ONE_THREAD)) for args in jobs]
    failed = [args[0] for args, p in procs if p.wait()]
    if failed:
        sys.exit(f"torchdiffusion {', '.join(failed)} failed; the messages are above")


def once(marker: Path) -> bool:
    """True when a step's marker is absent (the step must run): a rerun skips finished trainings, since
    --max-cpu-minutes counts per invocation and a second `train` would add to the budget."""
    return not marker.exists()


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
    ap.add_argument("--progressive-steps", type=int, default=1000,
                    help="progressive distillation's schedule (its rounds share it; set it to what fits the "
                         "CPU budget, or the last rounds never run: 3000 from 64 reached no 2-step round in 30 "
                         "CPU-minutes, docs/fewstep.md)")
    ap.add_argument("--progressive-start-steps", type=int, default=8,
                    help="progressive distillation's first teacher steps (its student takes half; rounds halve "
                         "down to 1)")
    ap.add_argument("--jobs", type=int, default=1, help="distillations run at once (one CPU thread each)")
    ap.add_argument("--seed", type=int, default=0,
                    help="seed of the teacher's training and of the distillations (another seed, another teacher)")
    ap.add_argument("--out", default="outputs/fewstep_fmnist")
    args = ap.parse_args()
    out = Path(args.out)
    start = time.time()
    teacher = out / "teacher"
    if once(out / "teacher.done"):
        td("train", "fashion_mnist", "--max-cpu-minutes", str(args.teacher_minutes), "--set", "train.num_threads=1",
           "--set", f"train.seed={args.seed}", "--out", str(teacher), "--no-progress")
        (out / "teacher.done").touch()
    notes: list[str] = []
    methods = args.methods.split(",")
    distills = []
    for m in methods:
        if once(out / f"{m}.done"):
            steps = args.progressive_steps if m == "progressive" else 100_000  # the others stop at the CPU budget
            extra = ["--start-steps", str(args.progressive_start_steps)] if m == "progressive" else []
            distills.append(("distill", str(teacher), "--method", m, "--max-cpu-minutes", str(args.method_minutes),
                             "--out", str(out / m), "--no-progress", "--max-steps", str(steps),
                             "--seed", str(args.seed), *extra))
    for i in range(0, len(distills), args.jobs):
        td_parallel(distills[i:i + args.jobs])
    for m in methods:
        (out / f"{m}.done").touch()
    # the teacher with its config's sampler (unipc), as `sample` would run it
    rows = {"teacher (unipc)": fid(teacher, "unipc", [2, 20], out / "eval-teacher", args.num)}
    for m in methods:
        run = out / m
        sampler = "consistency" if m == "consistency" else "ddim_fewstep"
        rows[m] = fid(run, sampler, [1, 2, 4], out / f"eval-{m}", args.num)
        if m == "progressive" and (run / "rounds" / "steps-2").is_dir():  # the 2-step round's own student
            rows["progressive, its 2-step round's student"] = fid(run / "rounds" / "steps-2", sampler, [2],
                                                                 out / f"eval-{m}-2", args.num)
        if m == "progressive" and not (run / "rounds" / "steps-1").is_dir():  # the budget ended before the end
            notes.append(f"progressive: its last round did not end within {args.method_minutes} CPU-min (rounds "
                         f"reached: {', '.join(sorted(p.name for p in (run / 'rounds').glob('steps-*'))) or 'none'})")
        td("sample", str(run), "--steps", "2", "--num", "64", "--tiles", str(out / f"grid-{m}.png"))
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; teacher "
          f"{args.teacher_minutes} CPU-min, {args.method_minutes} CPU-min per method; wall "
          f"{(time.time() - start) / 60:.0f} min\n")
    print("| model | FID 1 call | FID 2 calls | FID 4 calls | FID 20 calls |")
    print("|---|---|---|---|---|")
    for name, s in rows.items():
        print(f"| {name} | " + " | ".join(f"{s[n]:.1f}" if n in s else "-" for n in (1, 2, 4, 20)) + " |")
    for note in notes:
        print(f"\nnote: {note}")


if __name__ == "__main__":
    main()
