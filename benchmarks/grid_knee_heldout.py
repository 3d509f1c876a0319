"""Selection of the default grid knee (docs/samplers.md, "Grid knee") on held-out Gaussian mixtures.

The exponential-family methods (UniPC, DPM-Solver++(2M/3M), iPNDM) step on `grids.exponential(n, tail, sigma_max,
knee)`: uniform in log(sigma / (sigma + knee)), i.e. log-uniform below the knee and coarser above it. Each candidate
knee = c * sigma_data is scored by the error of the best of those methods (mean L2 distance to the exact flow map,
200 starts, default tail) relative to the plain log-uniform grid (c = inf), on the held-out mixtures of
grid_tail_heldout.py (A, B, C select; S, with component stds of 1-3 % of the data scale, checks fine structure), in
both settings (`edm`: sigma 0.002-80; `ddpm`: the DDPM linear table's range 0.010-157). None of them is the
benchmark's `mixture()`.

    nice -n 19 .venv/bin/python benchmarks/grid_knee_heldout.py    # about 10 minutes on two cores
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from grid_tail_heldout import MIXTURES, mixture  # noqa: E402
from samplers_gmm import error, flow_map  # noqa: E402

from torchdiffusion.processes import DiscreteVP  # noqa: E402
from torchdiffusion.sampling import METHODS, grids, sample  # noqa: E402
from torchdiffusion.schedules import make_betas  # noqa: E402

KNEES = (math.inf, 3.0, 10.0, 30.0, 100.0)
METHOD_NAMES = ("ipndm", "unipc", "dpmpp_2m", "dpmpp_3m")
NFES = (5, 10, 20, 30, 50)


def best_errors(gmm, smin: float, smax: float) -> dict[tuple[float, int], float]:
    """(c, nfe) -> error of the best method on the grid with knee c * sigma_data."""
    x = torch.randn(200, gmm.dim, generator=torch.Generator().manual_seed(100), dtype=torch.float64) * smax
    ref = flow_map(gmm, x, smax, [0.0])[0.0]
    out = {}
    for nfe in NFES:
        last = max(smin, grids.default_tail(nfe, gmm.sigma_data))
        for c in KNEES:
            errs = [error(sample(gmm, x, method=m, nfe=nfe, grid=grids.exponential(
                METHODS[m].steps_for(nfe), last, smax, c * gmm.sigma_data)), ref) for m in METHOD_NAMES]
            out[(c, nfe)] = min(errs)
    return out


def main() -> None:
    torch.set_num_threads(2)
    p = DiscreteVP(make_betas("linear", 1000))
    settings = {"edm": (0.002, 80.0), "ddpm": (float(p.sigmas_ve[0]), float(p.sigmas_ve[-1]))}
    res = {}
    for name, spec in MIXTURES.items():
        gmm = mixture(*spec)
        for setting, (smin, smax) in settings.items():
            res[(name, setting)] = best_errors(gmm, smin, smax)
            print(f"# {name} {setting} (sigma_data {gmm.sigma_data:.3f}) done", file=sys.stderr, flush=True)
    print("| knee / sigma_data | A, B, C (both settings), geometric mean error ratio to log-uniform: NFE "
          + " / ".join(map(str, NFES)) + " | worst single ratio | S (both settings): NFE " + " / ".join(map(str, NFES))
          + " |")
    print("|---|---|---:|---|")
    for c in KNEES[1:]:
        geo, worst, s_row = [], 0.0, []
        for n in NFES:
            r = [res[(m, s)][(c, n)] / res[(m, s)][(math.inf, n)] for m in "ABC" for s in settings]
            geo.append(math.exp(sum(map(math.log, r)) / len(r)))
            worst = max(worst, *r)
            rs = [res[("S", s)][(c, n)] / res[("S", s)][(math.inf, n)] for s in settings]
            s_row.append(math.exp(sum(map(math.log, rs)) / len(rs)))
        print(f"| {c:g} | " + " / ".join(f"{g:.2f}" for g in geo) + f" | {worst:.2f} | "
              + " / ".join(f"{g:.2f}" for g in s_row) + " |")


if __name__ == "__main__":
    main()
