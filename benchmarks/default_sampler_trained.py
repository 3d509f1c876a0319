"""The default sampler against DDIM on trained models: distance to a long reference solve of the same model.

For each run, every method of --methods at each NFE starts from the same noise as a long reference solve
(dpmpp_3m at --ref-nfe calls down to the model's sigma_min, then D) and is scored by (1) the RMS distance per
coordinate to the reference, sample by sample (the flow-map error), (2) the sliced Wasserstein-2 distance between its
samples and the reference's, and (3) the fraction of samples farther than 5 reference-RMS from their reference
sample (the far-outlier rate the issue reported); with --vs-data, (4) the sliced W2 to training points of a toy
dataset. Methods run through `sample()` on their default grid.

    nice -n 5 .venv/bin/python benchmarks/default_sampler_trained.py --runs runs/toy2d,runs/digits --num 2000
"""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path
from typing import Any

import torch

from torchdiffusion.generate import start_noise
from torchdiffusion.loading import load_run
from torchdiffusion.metrics.distances import sliced_wasserstein
from torchdiffusion.sampling import sample


def cpu_minutes() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return (r.ru_utime + r.ru_stime) / 60


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", required=True, help="comma-separated run directories or checkpoints")
    ap.add_argument("--methods", default="ddim,ipndm,dpmpp_2m,unipc,dpmpp_3m")
    ap.add_argument("--nfe", default="10,20,50")
    ap.add_argument("--num", type=int, default=2000, help="start noises per run")
    ap.add_argument("--ref-nfe", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-cpu-minutes", type=float, default=10.0)
    ap.add_argument("--vs-data", type=int, default=0, help="also the sliced W2 between the samples and this many "
                    "training points (a toy dataset), which needs no reference solve: where the model's own flow map "
                    "is dominated by its error at the top of its table, a reference solve scores nothing")
    ap.add_argument("--rules", default=None, help="score the candidate rules of benchmarks/grid_rules.py whose name "
                    "contains one of these |-separated strings (=name: exactly that one; 'all': every one) "
                    "instead of --methods")
    a = ap.parse_args()
    torch.set_num_threads(1)
    nfes = [int(n) for n in a.nfe.split(",")]
    methods = a.methods.split(",")
    for path in a.runs.split(","):
        if cpu_minutes() > a.max_cpu_minutes:
            print(f"# CPU budget spent: stopping before {path}", file=sys.stderr)
            break
        run = load_run(path)
        model = run.model
        x = start_noise(model, run.data_shape, a.num, a.seed)
        data = None
        if a.vs_data:
            from torchdiffusion.data import load_dataset
            pts = load_dataset(run.config.data.name, **run.config.data.options)[0].flatten(1).double()
            data = pts[torch.randperm(len(pts), generator=torch.Generator().manual_seed(a.seed))[:a.vs_data]]
        with torch.no_grad():
            ref = sample(model, x, method="dpmpp_3m", nfe=a.ref_nfe, tail=0).flatten(1)
            scale = ref.pow(2).mean().sqrt()
            print(f"\n#### {path} (step {run.meta.get('step')}, {type(model.process).__name__}, "
                  f"{run.config.model.prediction}), {a.num} starts, reference dpmpp_3m at {a.ref_nfe} calls\n")
            if data is not None:
                sw_ref = float(sliced_wasserstein(ref.double(), data, generator=torch.Generator().manual_seed(0)))
                print(f"(the reference's sliced W2 to {len(data)} training points: {sw_ref:.3g})\n")
            last = " / SW2 to data" if data is not None else ""
            print("| method | " + " | ".join(f"NFE {n}: RMS / SW2 / far{last}" for n in nfes) + " |")
            print("|---|" + "---:|" * len(nfes))
            rows: dict[str, Any] = {name: (lambda m, n, name=name: (name, None, {})) for name in methods}
            if a.rules:
                sys.path.insert(0, str(Path(__file__).parent))
                import grid_rules
                keys = a.rules.split("|")
                rows = {"ddim": rows.get("ddim", lambda m, n: ("ddim", None, {}))}
                rows.update({k: r for k, r in grid_rules.CANDIDATES.items() if a.rules == "all" or
                             any(k == s[1:] if s.startswith("=") else s in k for s in keys)})
            for name, rule in rows.items():
                cells = []
                for n in nfes:
                    method, grid, opts = rule(model, n)
                    y = sample(model, x, method=method, nfe=n, grid=grid, **opts).flatten(1)
                    rms = (y - ref).pow(2).mean(1).sqrt()
                    sw = float(sliced_wasserstein(y, ref, generator=torch.Generator().manual_seed(0)))
                    far = float((rms > 5 * scale).double().mean())
                    cell = f"{float(rms.mean()):.3g} / {sw:.3g} / {100 * far:.1f} %"
                    if data is not None:
                        g = torch.Generator().manual_seed(0)
                        cell += f" / {float(sliced_wasserstein(y.double(), data, generator=g)):.3g}"
                    cells.append(cell)
                print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
        print(f"\n({cpu_minutes():.1f} CPU minutes so far)")


if __name__ == "__main__":
    main()
