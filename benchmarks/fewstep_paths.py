"""The 2-D picture of issue 15: probability-flow paths of the exact teacher, of its reflowed student, and of a flow
trained from data with minibatch OT coupling, on random 2-D Gaussian mixtures (docs/figures/fewstep_paths.png).

Rows are mixtures (fewstep_gmm.mixture, the held-out seeds B of benchmarks/fewstep_gmm.py); columns are
  exact teacher   the analytic mixture's exact denoiser: its PF-ODE, i.e. rectified flow of independent noise;
  after reflow    a linear-flow MLP trained on 8192 (z, Phi(z)) pairs of that teacher (Liu et al. 2023, sec. 2.3);
  OT-CFM          a linear-flow MLP trained from data with minibatch OT coupling (Tong et al. 2024).
Students are fewstep_gmm's (MLP 128 x 3, batch 256, --steps Adam steps or their CPU share, learning rates chosen
there on seeds A: reflow 3e-3, OT-CFM 1e-3). Each panel draws --paths paths in flow time from the same noises,
coloured by the mixture component nearest to where they land, and its title gives the straightness S (Liu et al.
2023, eq. 7; 0 = straight) over 2000 noises.

    nice -n 5 env PYTHONPATH=src python benchmarks/fewstep_paths.py --max-cpu-minutes 2.5 \
        --out docs/figures/fewstep_paths.png
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from fewstep_gmm import mixture, train  # noqa: E402

from torchdiffusion.analytic import GaussianMixture  # noqa: E402
from torchdiffusion.distill import straightness  # noqa: E402

COLUMNS = (("exact teacher (PF-ODE)", None, 0.0), ("after reflow of the teacher", "reflow", 3e-3),
           ("OT-CFM (minibatch OT coupling)", "ot-cfm", 1e-3))


@torch.no_grad()
def trajectory(denoiser: Any, z: torch.Tensor, steps: int = 60) -> torch.Tensor:
    """Flow-time path y(t) = (1 - t) x(sigma = t / (1 - t)) from z at t = 0.999 down to 0, (steps + 1, B, 2), by
    DDIM (= Euler in flow time) on a uniform t grid."""
    t = torch.linspace(0.999, 0.0, steps + 1, dtype=torch.float64).tolist()
    dtype = torch.float32 if isinstance(denoiser, torch.nn.Module) else torch.float64
    y, out = z.clone().double(), [z.clone().double()]
    for a, b in zip(t[:-1], t[1:]):
        x0 = denoiser((y / (1 - a)).to(dtype), torch.full((len(y),), a / (1 - a), dtype=torch.float64)).double()
        y = x0 + (b / a) * (y - x0) if b > 0 else x0
        out.append(y)
    return torch.stack(out)


def path_straightness(d: Any, z: torch.Tensor) -> float:
    """S over the noises z, in the denoiser's dtype."""
    return straightness(d, z.float() if isinstance(d, torch.nn.Module) else z.double())


def plot(rows: list[tuple[GaussianMixture, torch.Tensor, dict[str, Any], dict[str, float]]], path: str,
         seeds: list[int] | None = None) -> None:
    """One row per mixture (its exact teacher, its students by column key, S by column key), paths from z."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), len(COLUMNS), figsize=(4.3 * len(COLUMNS), 4.1 * len(rows)), squeeze=False,
                             layout="constrained")
    colours = plt.get_cmap("tab10")
    for r, (gmm, z, students, s_vals) in enumerate(rows):
        ref = gmm.sample(1500, generator=torch.Generator().manual_seed(5))[0]
        for c, (title, key, _) in enumerate(COLUMNS):
            ax = axes[r, c]
            d = gmm if key is None else students.get(key)
            if d is None:
                ax.set_axis_off()
                continue
            tr = trajectory(d, z)
            mode = torch.cdist(tr[-1], gmm.means.double()).argmin(1)  # colour: the component a path lands on
            ax.scatter(ref[:, 0], ref[:, 1], s=1.5, c="0.82", zorder=1)
            for i in range(tr.shape[1]):
                ax.plot(tr[:, i, 0], tr[:, i, 1], lw=0.55, alpha=0.65, c=colours(int(mode[i]) % 10), zorder=2)
            ax.scatter(z[:, 0], z[:, 1], s=3, c="k", zorder=3)
            ax.set_title(f"{title}\nS = {s_vals[key or 'teacher']:.3f}", fontsize=10)
            ax.set_aspect("equal")
            ax.tick_params(labelsize=8)
            if c == 0 and seeds:
                ax.set_ylabel(f"mixture seed {seeds[r]}", fontsize=10)
    fig.supxlabel("paths in flow time from noise (black dots) to samples, coloured by the component they reach; "
                  "grey: the mixture", fontsize=9)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-cpu-minutes", type=float, default=2.5, help="CPU budget of the whole script")
    ap.add_argument("--steps", type=int, default=600, help="Adam steps per student")
    ap.add_argument("--seeds", default="1000,1001", help="mixture seeds, one row each")
    ap.add_argument("--paths", type=int, default=150, help="paths drawn per panel")
    ap.add_argument("--out", default="docs/figures/fewstep_paths.png")
    args = ap.parse_args()
    torch.set_num_threads(1)
    start = time.process_time()
    seeds = [int(s) for s in args.seeds.split(",")]
    per = 0.7 * args.max_cpu_minutes / (len(seeds) * (len(COLUMNS) - 1))  # the rest: pairs, paths, drawing
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"1 thread; {args.steps} steps per student, at most {per:.2f} CPU-min each\n")
    print("| mixture seed | " + " | ".join(t for t, _, _ in COLUMNS) + " |")
    print("|---|" + "---|" * len(COLUMNS))
    rows = []
    for seed in seeds:
        gmm = mixture(seed)
        z_eval = torch.randn(2000, 2, generator=torch.Generator().manual_seed(10_000 + seed), dtype=torch.float64)
        students = {key: train(key, gmm, lr, args.steps, 1, per)["model"] for _, key, lr in COLUMNS if key}
        s_vals = {"teacher": path_straightness(gmm, z_eval)}
        s_vals.update({k: path_straightness(m, z_eval) for k, m in students.items()})
        print(f"| {seed} | " + " | ".join(f"{s_vals[k or 'teacher']:.4f}" for _, k, _ in COLUMNS) + " |", flush=True)
        rows.append((gmm, z_eval[: args.paths], students, s_vals))
    plot(rows, args.out, seeds)
    print(f"\nwrote {args.out}; CPU time: {(time.process_time() - start) / 60:.2f} min")


if __name__ == "__main__":
    main()
