"""Hutchinson trace estimates of the probability-flow log-likelihood against k-diffusion's, on Gaussian mixtures.

Every estimate of log p_{sigma_min}(x) is scored against the mixture's exact `log_prob(x, sigma_min)` as the mean
absolute error in nats per dimension over data rows x ~ the mixture, with its standard error over rows. Rows:

  ours, exact trace                 the integration (and prior) error floor
  ours, 1 probe, default / gaussian / rademacher
  k-diffusion log_likelihood        one Rademacher probe (its only kind), torchdiffeq dopri5, its default
                                    rtol = atol = 1e-4
  ours, k-diffusion's probe         ours fed the very probe k-diffusion drew (same global-RNG draw), which separates
                                    the probe's luck from the estimator and the integrator

Problems: the sampler benchmark's 16-D mixture (samplers_gmm.mixture()) and random_mixture seeds 2000-2003 (the
held-out problems), sigma 0.002-80, N(0, 80^2 I) prior for everyone.

    nice -n 5 .venv/bin/python benchmarks/hutchinson_gmm.py --rows 256 --max-cpu-minutes 5
"""

from __future__ import annotations

import argparse
import math
import resource
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from samplers_gmm import load_k_sampling, mixture  # noqa: E402

import torchdiffusion.likelihood.ode as ode  # noqa: E402
from torchdiffusion.analytic_problems import random_mixture  # noqa: E402
from torchdiffusion.likelihood import ode_log_likelihood  # noqa: E402

SMIN, SMAX = 0.002, 80.0


def k_probe_seeded(x: torch.Tensor, seed: int) -> torch.Tensor:
    """The probe k-diffusion's log_likelihood draws after torch.manual_seed(seed): randint_like(x, 2) * 2 - 1."""
    torch.manual_seed(seed)
    return torch.randint_like(x, 2) * 2 - 1


def mae(est: torch.Tensor, exact: torch.Tensor, d: int) -> tuple[float, float]:
    e = ((est - exact).abs() / d).tolist()
    return statistics.fmean(e), statistics.stdev(e) / math.sqrt(len(e))


def run(gmm, rows: int, K) -> dict[str, tuple[float, float, int]]:
    d = gmm.dim
    x, _ = gmm.sample(rows, generator=torch.Generator().manual_seed(1))
    exact = gmm.log_prob(x, SMIN)
    out = {}
    g = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    cases = {"ours, exact trace": dict(trace="exact")}
    cases.update({f"ours, 1 probe, {p}": dict(trace="hutchinson", probe=p, generator=g())
                  for p in ("gaussian", "rademacher")})
    cases["ours, 1 probe, default kind"] = dict(trace="hutchinson", generator=g())
    for name, kw in cases.items():
        est, st = ode_log_likelihood(gmm, x, sigma_min=SMIN, sigma_max=SMAX, return_stats=True, **kw)
        out[name] = (*mae(est, exact, d), st["nfe"])
    if K is not None:
        fe = {}

        def model(xx, s):
            return gmm(xx, s)
        torch.manual_seed(3)
        est, info = K.log_likelihood(model, x, SMIN, SMAX)
        out["k-diffusion log_likelihood (rtol = atol = 1e-4)"] = (*mae(est, exact, d), info["fevals"])
        v = k_probe_seeded(x, 3)
        original = ode.trace_vectors
        ode.trace_vectors = lambda *a, **k: v[None]  # the very probe k-diffusion drew
        try:
            for tol in (1e-4, 1e-5):
                est, st = ode_log_likelihood(gmm, x, sigma_min=SMIN, sigma_max=SMAX, trace="hutchinson", rtol=tol,
                                             atol=tol, return_stats=True)
                out[f"ours, k-diffusion's probe, rtol = atol = {tol:g}"] = (*mae(est, exact, d), st["nfe"])
        finally:
            ode.trace_vectors = original
        fe["k"] = info["fevals"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--seeds", default="bench,2000,2001,2002,2003")
    ap.add_argument("--max-cpu-minutes", type=float, default=5.0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    K = load_k_sampling()
    for seed in a.seeds.split(","):
        r = resource.getrusage(resource.RUSAGE_SELF)
        if (r.ru_utime + r.ru_stime) / 60 > a.max_cpu_minutes:
            print(f"# CPU budget spent: stopping before {seed}", file=sys.stderr)
            break
        gmm = mixture() if seed == "bench" else random_mixture(int(seed)).mixture
        res = run(gmm, a.rows, K)
        print(f"\n#### problem {seed} (d = {gmm.dim}), {a.rows} rows: mean |error| in nats/dim ± standard error\n")
        print("| estimator | MAE (nats/dim) | NFE |")
        print("|---|---:|---:|")
        for name, (m, se, nfe) in res.items():
            print(f"| {name} | {m:.3g} ± {se:.1g} | {nfe} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
