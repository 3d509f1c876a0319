"""Selection of the default grid tail (docs/samplers.md, "Grid tail") on held-out Gaussian mixtures.

Candidate rules f(nfe) give the last nonzero sigma of the default grid, max(sigma_min, f(nfe) * sigma_data); each is
scored by the error of the best of our deterministic methods on its default grid family (mean L2 distance to the
exact flow map, 200 starts) relative to the same methods without a tail. Mixtures A, B, C select; S (component stds
of 1-3 % of the data scale) checks the cost where the data has much finer structure. None of them is the
benchmark's `mixture()` (benchmarks/samplers_gmm.py).

    nice -n 19 .venv/bin/python benchmarks/grid_tail_heldout.py    # about 15 minutes on two shared cores
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from samplers_gmm import error, flow_map  # noqa: E402

from torchdiffusion.analytic import GaussianMixture  # noqa: E402
from torchdiffusion.processes import DiscreteVP  # noqa: E402
from torchdiffusion.sampling import METHODS, grids, sample  # noqa: E402
from torchdiffusion.schedules import make_betas  # noqa: E402

# name: (seed, dim, components, mean scale, variance low, variance span): variances low + span * U(0, 1)
MIXTURES = {"A": (7, 8, 6, 1.5, 0.005, 0.3), "B": (11, 32, 10, 0.5, 0.02, 0.1), "C": (13, 4, 4, 3.0, 0.05, 0.5),
            "S": (17, 16, 8, 0.5, 1e-4, 9e-4)}
RULES = {"none": lambda n: 0.0,
         "0.04 min(1, (20/nfe)^3)": lambda n: 0.04 * min(1, (20 / n) ** 3),
         "0.04 min(1, (20/nfe)^2)": lambda n: 0.04 * min(1, (20 / n) ** 2),
         "0.04 min(1, (25/nfe)^3)": lambda n: 0.04 * min(1, (25 / n) ** 3),
         "0.06 min(1, (15/nfe)^3)": lambda n: 0.06 * min(1, (15 / n) ** 3),
         "0.03 min(1, (20/nfe)^3)": lambda n: 0.03 * min(1, (20 / n) ** 3)}
FAMILY = {"ipndm": "exponential", "unipc": "exponential", "dpmpp_3m": "exponential", "dpmpp_2m": "exponential",
          "lms": "karras", "heun": "karras", "euler": "karras"}
NFES = (5, 10, 20, 30, 50)


def mixture(seed: int, dim: int, k: int, mscale: float, vlo: float, vspan: float) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    means = mscale * torch.randn(k, dim, generator=g, dtype=torch.float64)
    var = vlo + vspan * torch.rand(k, dim, generator=g, dtype=torch.float64)
    return GaussianMixture(0.5 + torch.rand(k, generator=g, dtype=torch.float64), means, var)


def best_errors(gmm: GaussianMixture, smin: float, smax: float) -> dict[tuple[str, int], float]:
    """(rule, nfe) -> error of the best method with that rule's tail."""
    x = torch.randn(200, gmm.dim, generator=torch.Generator().manual_seed(100), dtype=torch.float64) * smax
    ref = flow_map(gmm, x, smax, [0.0])[0.0]
    out = {}
    for rule, f in RULES.items():
        for nfe in NFES:
            last = max(smin, f(nfe) * gmm.sigma_data)
            errs = [error(sample(gmm, x, method=m, nfe=nfe,
                                 grid=getattr(grids, g)(METHODS[m].steps_for(nfe), last, smax)), ref)
                    for m, g in FAMILY.items()]
            out[(rule, nfe)] = min(errs)
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
    print("| rule `f(nfe)` | A, B, C: NFE " + " / ".join(map(str, NFES)) + " | S (`edm`): NFE 20 / 30 / 50 |")
    print("|---|---|---|")
    for rule in list(RULES)[1:]:
        geo = []
        for n in NFES:
            r = [res[(m, s)][(rule, n)] / res[(m, s)][("none", n)] for m in "ABC" for s in settings]
            geo.append(math.exp(sum(map(math.log, r)) / len(r)))
        s_ratio = [res[("S", "edm")][(rule, n)] / res[("S", "edm")][("none", n)] for n in (20, 30, 50)]
        print(f"| {rule} | " + " / ".join(f"{g:.2f}" for g in geo) + " | " + " / ".join(f"{v:.2f}" for v in s_ratio)
              + " |")
    chosen = list(RULES)[1]
    print("\n| mixture, setting | " + " | ".join(f"NFE {n}" for n in NFES) + " |")
    print("|---|" + "---:|" * len(NFES))
    for (m, s), r in res.items():
        print(f"| {m} `{s}` | " + " | ".join(f"{r[('none', n)]:.2e} -> {r[(chosen, n)]:.2e}" for n in NFES) + " |")


if __name__ == "__main__":
    main()
