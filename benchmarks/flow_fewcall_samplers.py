"""Every registered ODE sampler on a linear-flow model at 1, 2, 3, 4 and 8 calls, against the exact probability-flow
map: random 2-D Gaussian mixtures (fewstep_gmm.mixture) posed as flow models, x_t = (1 - t) x0 + t eps with
t in [1e-4, 1 - 1e-4] (sigma_ve from 1e-4 to 9999), through ModelDenoiser with an exact velocity network, so that
every conversion of a trained flow is exercised. Nothing is chosen here: it is a check that the error is finite and
falls with the calls, and a comparison of the default grids with the few-step grid (uniform in t) at small budgets.

Map error: mean ||x - Phi(z)|| per sample over 500 noises, Phi by scipy DOP853 at 1e-10 (samplers_gmm.flow_map) to
sigma_min, then the exact denoiser there; mean over the mixtures.

    nice -n 5 env PYTHONPATH=src python benchmarks/flow_fewcall_samplers.py --max-cpu-minutes 2
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from fewstep_gmm import mixture  # noqa: E402
from samplers_gmm import flow_map  # noqa: E402

from torchdiffusion.analytic import ExactVelocity  # noqa: E402
from torchdiffusion.model_denoiser import ModelDenoiser  # noqa: E402
from torchdiffusion.processes import Flow  # noqa: E402
from torchdiffusion.sampling import METHODS, sample  # noqa: E402

CALLS = (1, 2, 3, 4, 8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-cpu-minutes", type=float, default=2.0, help="stop adding mixtures past this CPU time")
    ap.add_argument("--seeds", default="1000,1001", help="mixture seeds")
    args = ap.parse_args()
    torch.set_num_threads(1)
    start = time.process_time()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"1 thread\n")
    names = sorted(n for n, m in METHODS.items() if m.kind == "ODE")
    errs: dict[str, list[list[float]]] = {n: [] for n in names}
    used = []
    for seed in (int(s) for s in args.seeds.split(",")):
        if time.process_time() - start > 60 * args.max_cpu_minutes:
            break
        process = Flow()
        model = ModelDenoiser(ExactVelocity(mixture(seed), process), process, "velocity")
        z = torch.randn(500, 2, generator=torch.Generator().manual_seed(10_000 + seed), dtype=torch.float64)
        x = z * process.prior_std_ve()
        exact = reference(model, x)
        for n in names:
            errs[n].append([float((sample(model, x, method=n, nfe=c) - exact).norm(dim=1).mean()) for c in CALLS])
        used.append(seed)
    print(f"mixture seeds {used}; map error by calls\n")
    print("| sampler | " + " | ".join(f"{c} call{'s' if c > 1 else ''}" for c in CALLS) + " |")
    print("|---|" + "---|" * len(CALLS))
    for n in names:
        mean = [sum(r[i] for r in errs[n]) / len(errs[n]) for i in range(len(CALLS))]
        assert all(math.isfinite(v) for v in mean), n
        print(f"| {n} | " + " | ".join(f"{v:.3f}" for v in mean) + " |")
    print(f"\nCPU time: {(time.process_time() - start) / 60:.2f} min")


def reference(model: ModelDenoiser, x: torch.Tensor) -> torch.Tensor:
    """The exact map from sigma_max to sigma_min, then the exact denoiser there (DOP853, samplers_gmm.flow_map)."""
    gmm = model.backbone.gmm
    ref = flow_map(gmm, x, model.sigma_max, [model.sigma_min])[model.sigma_min]
    return gmm(ref, model.sigma_min)


if __name__ == "__main__":
    main()
