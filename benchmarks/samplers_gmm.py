"""Sampler accuracy and overhead on an analytic Gaussian mixture: ours against diffusers and k-diffusion.

Every solver starts from the same noise at the same sigma_max and is scored against the exact probability-flow
map of the same mixture (scipy DOP853 at rtol = atol = 1e-10 on dx/dlog(sigma) = x - D(x, sigma)), as the mean
per-sample L2 error, at NFE 5, 10, 20, 50 (each peer run with the most steps its own cost rule fits in the budget;
the calls are counted and never exceed it). A run that stops at sigma_min > 0 (k-diffusion's dpm_fast, diffusers'
DEIS) is scored against the exact map to its own last sigma. Two settings:

  edm   sigma in [0.002, 80]: k-diffusion on Karras and exponential grids, diffusers' EDM schedulers;
  ddpm  diffusers' DDPM linear table (beta 1e-4..0.02, T = 1000; sigma in [0.010, 157.4]): diffusers' schedulers
        with trailing spacing (all start at t = 999), fed an eps-model built from the exact denoiser at the
        scheduler's own sigma, and k-diffusion on Karras / exponential grids over the table's range.

Ours run through `sample()` on their default grid (Karras rho = 7, or log-uniform for the multistep exponential
integrators and iPNDM, stopping at the default tail max(sigma_min, grids.default_tail(nfe, sigma_data)) before the
final step to 0, with the mixture's own std as sigma_data) and, for the best two at each NFE (the best one at NFE
50), on a grid from `calibrate_grid` fitted on different start noise than the scored one. In the `ddpm` setting four
of ours also run on the peers' own grid (the table respaced with trailing spacing), which separates the effect of
the grid from that of the solver, and two on the default grid of a discrete-time model (the same rule, moved to the
nearest table levels). A second
table times the sampler itself: seconds per step with a near-free denoiser (x * 0.5) at batch 1 and 4096 (x of
shape (B, 3, 16, 16), float32, 2 threads), ours against diffusers schedulers of the same order.

    nice -n 19 .venv/bin/python benchmarks/samplers_gmm.py [--quick | --no-calibrate] [--plot outputs/samplers_gmm.png]

k-diffusion 0.1.1.post1 is needed for its peers (pip install --no-deps k-diffusion==0.1.1.post1); its package
__init__ imports torchvision, so k_diffusion/sampling.py is loaded from its file with a two-function stand-in for
k_diffusion.utils (and torchsde, used only by its SDE noise samplers, stubbed when absent).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import time
import types
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from torchdiffusion.analytic import GaussianMixture
from torchdiffusion.denoiser import CountingDenoiser
from torchdiffusion.processes import DiscreteVP
from torchdiffusion.sampling import METHODS, calibrate_grid, default_grid, grids, resolve_knee, resolve_tail, sample
from torchdiffusion.schedules import make_betas

NFES = (5, 10, 20, 50)
DIM, K = 16, 12


def mixture() -> GaussianMixture:
    """A fixed 16-D mixture of 12 diagonal Gaussians: means ~ N(0, I), per-coordinate variances in [0.01, 0.25]."""
    g = torch.Generator().manual_seed(0)
    means = torch.randn(K, DIM, generator=g, dtype=torch.float64)
    var = 0.01 + 0.24 * torch.rand(K, DIM, generator=g, dtype=torch.float64)
    weights = 0.5 + torch.rand(K, generator=g, dtype=torch.float64)
    return GaussianMixture(weights, means, var)


def flow_map(gmm: GaussianMixture, x: torch.Tensor, sigma_max: float, ends: list[float]) -> dict[float, torch.Tensor]:
    """The exact flow map from sigma_max to each sigma in `ends` (0 = to 1e-7, then E[x0 | x])."""
    from scipy.integrate import solve_ivp

    shape = x.shape
    stops = sorted({max(e, 1e-7) for e in ends}, reverse=True)

    def rhs(u: float, y: np.ndarray) -> np.ndarray:
        xx = torch.from_numpy(y).reshape(shape)
        return (xx - gmm(xx, math.exp(u))).reshape(-1).numpy()

    sol = solve_ivp(rhs, (math.log(sigma_max), math.log(stops[-1])), x.reshape(-1).numpy(), method="DOP853",
                    t_eval=[math.log(s) for s in stops], rtol=1e-10, atol=1e-10)
    at = {s: torch.from_numpy(sol.y[:, j]).reshape(shape) for j, s in enumerate(stops)}
    return {e: (gmm(at[1e-7], 1e-7) if e == 0 else at[e]) for e in ends}


def error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return (out.double() - ref).reshape(len(ref), -1).norm(dim=1).mean().item()


# ---------------------------------------------------------------------------------------------------- peers


def load_k_sampling() -> types.ModuleType | None:
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "sampling.py"
    pkg = types.ModuleType("kdiff_shim")
    pkg.__path__ = []
    utils = types.ModuleType("kdiff_shim.utils")
    utils.append_dims = lambda x, n: x[(...,) + (None,) * (n - x.ndim)]
    utils.append_zero = lambda x: torch.cat([x, x.new_zeros([1])])
    sys.modules.update({"kdiff_shim": pkg, "kdiff_shim.utils": utils})
    pkg.utils = utils
    stub = importlib.util.find_spec("torchsde") is None
    if stub:
        sys.modules["torchsde"] = types.ModuleType("torchsde")
    mod_spec = importlib.util.spec_from_file_location("kdiff_shim.sampling", path)
    mod = importlib.util.module_from_spec(mod_spec)
    try:
        mod_spec.loader.exec_module(mod)
    finally:
        if stub:  # others probe for torchsde with find_spec, which a spec-less stub breaks
            del sys.modules["torchsde"]
    return mod


def k_runs(K: types.ModuleType, smin: float, smax: float) -> dict[str, Callable[[Any, torch.Tensor, int], tuple]]:
    """name -> run(denoiser, x, nfe) -> (x_out, last sigma) for k-diffusion's samplers."""
    runs: dict[str, Callable] = {}
    cost = {"euler": lambda n: n, "lms": lambda n: n, "dpmpp_2m": lambda n: n,
            "heun": lambda n: (n + 1) // 2, "dpm_2": lambda n: (n + 1) // 2}
    for gname, gfn in (("karras", K.get_sigmas_karras), ("exponential", K.get_sigmas_exponential)):
        for name, steps in cost.items():
            fn = getattr(K, f"sample_{name}")

            def run(D, x, nfe, fn=fn, steps=steps, gfn=gfn):
                sig = gfn(steps(nfe), smin, smax).double()
                return fn(D, x, sig, disable=True), 0.0, float(sig[0])
            runs[f"k-diffusion {name} ({gname})"] = run

    def run_fast(D, x, nfe):
        return K.sample_dpm_fast(D, x, smin, smax, nfe, disable=True), smin, smax
    runs["k-diffusion dpm_fast"] = run_fast
    return runs


def ddpm_table_schedulers() -> dict[str, tuple[Callable[[], Any], Callable[[int], int]]]:
    """name -> (scheduler factory, steps for an NFE budget), all on the DDPM linear table, trailing spacing."""
    import diffusers

    table = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                 timestep_spacing="trailing")
    one = lambda n: n
    return {
        "diffusers DDIM": (lambda: diffusers.DDIMScheduler(**table, clip_sample=False, set_alpha_to_one=True), one),
        "diffusers Euler": (lambda: diffusers.EulerDiscreteScheduler(**table), one),
        "diffusers Heun": (lambda: diffusers.HeunDiscreteScheduler(**table), lambda n: (n + 1) // 2),
        "diffusers DPMSolverMultistep 2M": (
            lambda: diffusers.DPMSolverMultistepScheduler(**table, solver_order=2), one),
        "diffusers DPMSolverMultistep 3M": (
            lambda: diffusers.DPMSolverMultistepScheduler(**table, solver_order=3), one),
        "diffusers DPMSolverMultistep 2M Karras": (
            lambda: diffusers.DPMSolverMultistepScheduler(**table, solver_order=2, use_karras_sigmas=True), one),
        "diffusers UniPC": (lambda: diffusers.UniPCMultistepScheduler(**table), one),
        "diffusers DEIS": (lambda: diffusers.DEISMultistepScheduler(**table), one),
        "diffusers LMS": (lambda: diffusers.LMSDiscreteScheduler(**table), one),
        "diffusers PNDM (PLMS)": (lambda: diffusers.PNDMScheduler(**table, skip_prk_steps=True, set_alpha_to_one=True),
                                  lambda n: n - 1),
    }


def edm_schedulers(smin: float, smax: float) -> dict[str, tuple[Callable[[], Any], Callable[[int], int]]]:
    import diffusers

    one = lambda n: n
    out = {}
    for sched in ("karras", "exponential"):
        for order in (2, 3):
            out[f"diffusers EDMDPMSolverMultistep {order}M ({sched})"] = (
                lambda o=order, s=sched: diffusers.EDMDPMSolverMultistepScheduler(
                    sigma_min=smin, sigma_max=smax, sigma_schedule=s, solver_order=o), one)
    out["diffusers EDMEuler (karras)"] = (lambda: diffusers.EDMEulerScheduler(sigma_min=smin, sigma_max=smax), one)
    return out


def run_diffusers(sched: Any, D: Callable, x_ve: torch.Tensor, steps: int) -> tuple[torch.Tensor, float]:
    """Drive a diffusers scheduler with the exact denoiser; returns (x in VE coordinates, last sigma).

    The model answers for the scheduler's own current sigma: eps = (x_ve - D(x_ve, sigma)) / sigma, where VP-table
    schedulers (init_noise_sigma = 1) hold x_vp = x_ve / sqrt(1 + sigma^2) and Euler/Heun hold x_ve; EDM schedulers
    get the raw output F with precondition_outputs(x, F) = D (affine in F: two probes of their own scalings).
    """
    sched.set_timesteps(steps)
    edm = hasattr(sched, "precondition_outputs")
    vp = not edm and float(sched.init_noise_sigma) == 1.0
    has_sigmas = hasattr(sched, "sigmas")

    def sigma_of(i: int, t: torch.Tensor) -> float:
        if not has_sigmas:  # DDIM: integer steps of the table
            ab = float(sched.alphas_cumprod[int(t)])
            return math.sqrt((1 - ab) / ab)
        return float(sched.sigmas[sched.step_index if getattr(sched, "step_index", None) is not None else i])

    s0 = sigma_of(0, sched.timesteps[0])
    x = x_ve / math.sqrt(1 + s0**2) if vp else x_ve.clone()
    for i, t in enumerate(sched.timesteps):
        sched.scale_model_input(x, t)  # sets the step index of schedulers that keep one
        sigma = sigma_of(i, t)
        xv = x * math.sqrt(1 + sigma**2) if vp else x
        d = D(xv, torch.full((len(x),), sigma, dtype=x.dtype))
        if edm:
            s = torch.tensor(sigma, dtype=x.dtype)
            p0 = sched.precondition_outputs(x, torch.zeros_like(x), s)
            p1 = sched.precondition_outputs(x, torch.ones_like(x), s)
            out = (d - p0) / (p1 - p0)
        else:
            out = (xv - d) / sigma
        x = sched.step(out, t, x).prev_sample
    last = float(sched.sigmas[-1]) if has_sigmas else 0.0
    return (x * math.sqrt(1 + last**2) if vp else x), last, s0


# ---------------------------------------------------------------------------------------------------- accuracy


def accuracy(setting: str, gmm: GaussianMixture, K: types.ModuleType | None, n_points: int, calibrate: bool,
             iters: int) -> dict[str, dict[int, float]]:
    if setting == "edm":
        smin, smax = 0.002, 80.0
    else:
        p = DiscreteVP(make_betas("linear", 1000))
        smin, smax = float(p.sigmas_ve[0]), float(p.sigmas_ve[-1])
    x = torch.randn(n_points, DIM, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * smax
    x_cal = torch.randn(256, DIM, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * smax
    ends = [0.0, smin]
    peers: dict[str, tuple] = {}
    if K is not None:
        peers.update({n: (r, None) for n, r in k_runs(K, smin, smax).items()})
    for name, (factory, steps) in (edm_schedulers(smin, smax) if setting == "edm" else ddpm_table_schedulers()).items():
        peers[name] = (lambda D, xx, nfe, f=factory, st=steps: run_diffusers(f(), D, xx, st(nfe)), None)
    results: dict[str, dict[int, float]] = {}
    refs: dict[float, torch.Tensor] = {}

    def ref_at(sigma_end: float) -> torch.Tensor:
        key = round(sigma_end, 9)
        if key not in refs:
            refs.update({round(k, 9): v for k, v in flow_map(gmm, x, smax, [sigma_end]).items()})
        return refs[key]

    refs.update({round(k, 9): v for k, v in flow_map(gmm, x, smax, ends).items()})

    for name, m in METHODS.items():
        if m.kind != "ODE":
            continue
        results[f"ours {name}"] = {}
        for nfe in NFES:
            D = CountingDenoiser(gmm)
            out = sample(D, x, method=name, nfe=nfe, sigma_min=smin, sigma_max=smax)
            assert D.calls <= nfe, (name, nfe, D.calls)
            results[f"ours {name}"][nfe] = error(out, ref_at(0.0))
    if setting == "ddpm":  # the same algorithms on the peers' own grid: separates the grid from the solver
        for name in ("lms", "ipndm", "unipc", "dpmpp_3m"):
            results[f"ours {name} (table grid, trailing)"] = {}
            for nfe in NFES:
                grid = grids.discrete_sigmas(p.sigmas_ve, METHODS[name].steps_for(nfe), "trailing")
                out = sample(gmm, x, method=name, nfe=nfe, grid=grid)
                results[f"ours {name} (table grid, trailing)"][nfe] = error(out, ref_at(0.0))
        for name in ("ipndm", "unipc"):  # a discrete-time model's default: the rule's grid at the table's levels
            m = METHODS[name]
            results[f"ours {name} (table grid, default tail)"] = {}
            for nfe in NFES:
                rule = default_grid(gmm, m.steps_for(nfe), smin, smax, m.grid, resolve_tail(gmm, m, nfe, None),
                                    resolve_knee(gmm, m))
                out = sample(gmm, x, method=name, nfe=nfe, grid=grids.nearest_in_table(rule, p.sigmas_ve))
                results[f"ours {name} (table grid, default tail)"][nfe] = error(out, ref_at(0.0))
    for name, (run, _) in peers.items():
        results[name] = {}
        for nfe in NFES:
            D = CountingDenoiser(gmm)
            try:
                out, last, first = run(D, x, nfe)
            except Exception as exc:  # a peer that cannot run at this budget is reported as missing
                print(f"# {name} at NFE {nfe}: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            assert D.calls <= nfe, (name, nfe, D.calls)
            assert abs(first - smax) < 1e-5 * smax, (name, first, smax)  # the same start for everyone
            results[name][nfe] = error(out, ref_at(last))
    if calibrate:  # the best two default-grid methods (one at NFE 50, with half the sweeps: ~90k calls each)
        ours_default = {n: r for n, r in results.items() if is_default(n) and n != "ours dopri5"}
        for nfe in NFES:
            for name in sorted(ours_default, key=lambda n: ours_default[n][nfe])[:2 if nfe < 50 else 1]:
                method = name.split(" ", 1)[1]
                sig, info = calibrate_grid(gmm, x_cal, method=method, nfe=nfe, sigma_min=smin, sigma_max=smax,
                                           iters=iters if nfe < 50 else iters // 2,
                                           generator=torch.Generator().manual_seed(0))
                D = CountingDenoiser(gmm)
                out = sample(D, x, method=method, nfe=nfe, grid=sig)
                assert D.calls <= nfe
                results.setdefault(f"ours {method} (calibrated)", {})[nfe] = error(out, ref_at(0.0))
                print(f"# calibrated {method} NFE {nfe}: start {info['start']}, {info['denoiser_calls']} calls, "
                      f"{info['sweeps']} sweeps", file=sys.stderr)
    return results


def is_default(name: str) -> bool:
    return name.startswith("ours") and "(" not in name


def print_accuracy(setting: str, results: dict[str, dict[int, float]]) -> dict[int, dict[str, Any]]:
    print(f"\n### Error vs NFE, setting `{setting}` (mean L2 distance to the exact flow map; lower is better)\n")
    print("| sampler | " + " | ".join(f"NFE {n}" for n in NFES) + " |")
    print("|---|" + "---:|" * len(NFES))
    for name, row in results.items():
        print(f"| {name} | " + " | ".join(f"{row[n]:.2e}" if n in row else "—" for n in NFES) + " |")
    summary = {}
    print("\n| NFE | best ours (default grid) | best ours (calibrated) | best peer | default / peer "
          "| calibrated / peer |")
    print("|---:|---|---|---|---:|---:|")
    for n in NFES:
        pick = lambda pred: min(((r[n], k) for k, r in results.items() if pred(k) and n in r),
                                default=(math.nan, "—"))
        ours = pick(is_default)
        cal = pick(lambda k: is_default(k) or k.endswith("(calibrated)"))
        peer = pick(lambda k: not k.startswith("ours"))
        summary[n] = {"ours": ours, "calibrated": cal, "peer": peer}
        print(f"| {n} | {ours[1]} {ours[0]:.2e} | {cal[1]} {cal[0]:.2e} | {peer[1]} {peer[0]:.2e} "
              f"| {ours[0] / peer[0]:.2f} | {cal[0] / peer[0]:.2f} |")
    return summary


# ---------------------------------------------------------------------------------------------------- overhead


def overhead(repeats: int) -> list[tuple[str, int, int, float]]:
    """(name, order, batch, seconds per step): the best of `repeats` rounds, each round running every sampler once
    (interleaved, so that load from other processes hits ours and theirs alike)."""
    import diffusers

    steps = 50
    free = lambda x, s: x * 0.5
    table = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                 timestep_spacing="trailing")
    theirs = {
        1: {"diffusers DDIM": lambda: diffusers.DDIMScheduler(**table, clip_sample=False),
            "diffusers Euler": lambda: diffusers.EulerDiscreteScheduler(**table)},
        2: {"diffusers DPMSolverMultistep 2M": lambda: diffusers.DPMSolverMultistepScheduler(**table, solver_order=2),
            "diffusers Heun": lambda: diffusers.HeunDiscreteScheduler(**table)},
        3: {"diffusers DPMSolverMultistep 3M": lambda: diffusers.DPMSolverMultistepScheduler(**table, solver_order=3),
            "diffusers UniPC (order 3)": lambda: diffusers.UniPCMultistepScheduler(**table, solver_order=3),
            "diffusers DEIS (order 3)": lambda: diffusers.DEISMultistepScheduler(**table, solver_order=3)},
        4: {"diffusers LMS": lambda: diffusers.LMSDiscreteScheduler(**table),
            "diffusers PNDM (PLMS)": lambda: diffusers.PNDMScheduler(**table, skip_prk_steps=True)},
    }
    ours = {1: ["euler", "ddim"], 2: ["dpmpp_2m", "ipndm", "heun"], 3: ["dpmpp_3m", "unipc"], 4: ["lms"]}
    rows = []
    for batch in (1, 4096):
        x = torch.randn(batch, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        runs: dict[tuple[str, int], tuple[Callable[[], Any], int]] = {}
        for order in ours:
            for name in ours[order]:
                runs[(f"ours {name}", order)] = (
                    lambda name=name: sample(free, x, method=name, nfe=steps, sigma_min=0.01, sigma_max=157.0),
                    METHODS[name].steps_for(steps))
            for name, factory in theirs[order].items():
                sched = factory()
                n_steps = (steps + 1) // 2 if "Heun" in name else steps

                def run(sched=sched, n_steps=n_steps):
                    sched.set_timesteps(n_steps)
                    y = x * sched.init_noise_sigma
                    for t in sched.timesteps:
                        y = sched.step(free(sched.scale_model_input(y, t), t), t, y).prev_sample
                runs[(name, order)] = (run, n_steps)
        best = {key: math.inf for key in runs}
        for fn, _ in runs.values():
            fn()  # warm-up
        for _ in range(repeats):
            for key, (fn, _) in runs.items():
                t0 = time.perf_counter()
                fn()
                best[key] = min(best[key], time.perf_counter() - t0)
        rows += [(name, order, batch, best[(name, order)] / runs[(name, order)][1]) for name, order in runs]
    return rows


def print_overhead(rows: list[tuple[str, int, int, float]]) -> dict[tuple[int, int], float]:
    print("\n### Sampler overhead: seconds per step, denoiser x * 0.5, x of shape (B, 3, 16, 16) float32, 2 threads\n")
    print("| sampler | order | batch 1 | batch 4096 |")
    print("|---|---:|---:|---:|")
    names = list(dict.fromkeys((r[0], r[1]) for r in rows))
    t = {(r[0], r[2]): r[3] for r in rows}
    for name, order in names:
        print(f"| {name} | {order} | {t[(name, 1)] * 1e6:.0f} µs | {t[(name, 4096)] * 1e3:.2f} ms |")
    ratios = {}
    print("\n| order | batch | fastest ours | fastest diffusers | ours / diffusers |")
    print("|---:|---:|---|---|---:|")
    for order in sorted({od for _, od in names}):
        for batch in (1, 4096):
            o = min((t[(n, batch)], n) for n, od in names if od == order and n.startswith("ours"))
            d = min((t[(n, batch)], n) for n, od in names if od == order and not n.startswith("ours"))
            ratios[(order, batch)] = o[0] / d[0]
            print(f"| {order} | {batch} | {o[1]} | {d[1]} | {o[0] / d[0]:.2f} |")
    return ratios


def plot(all_results: dict[str, dict[str, dict[int, float]]], path: str, top: int = 5) -> None:
    """Error vs NFE per setting: the `top` best default-grid methods of ours and of the peers (ranked by their
    NFE 10 + NFE 20 errors) and every calibrated run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(all_results), figsize=(6.5 * len(all_results), 5.5))
    for ax, (setting, results) in zip(np.atleast_1d(axes), all_results.items()):
        rank = lambda n: math.log(results[n].get(10, math.inf)) + math.log(results[n].get(20, math.inf))
        peers = sorted((n for n in results if not n.startswith("ours")), key=rank)[:top]
        ours = sorted((n for n in results if is_default(n)), key=rank)[:top]
        for name in ours + [n for n in results if n.endswith("(calibrated)")] + peers:
            ns = [n for n in NFES if n in results[name]]
            style = "--x" if not name.startswith("ours") else (":o" if "calibrated" in name else "-o")
            ax.loglog(ns, [results[name][n] for n in ns], style, label=name, ms=3)
        ax.set_xticks(NFES, [str(n) for n in NFES])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_title(f"setting {setting}")
        ax.set_xlabel("NFE")
        ax.set_ylabel("mean L2 error to the exact flow map")
        ax.legend(fontsize=6)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer points, no calibration, fewer timing repeats")
    ap.add_argument("--plot", default="outputs/samplers_gmm.png")
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--no-calibrate", action="store_true", help="skip grid calibration (all points, all repeats)")
    ap.add_argument("--iters", type=int, default=20, help="compass-search sweeps of calibrate_grid")
    a = ap.parse_args()
    torch.set_num_threads(2)
    gmm = mixture()
    K = load_k_sampling()
    if K is None:
        print("# k-diffusion not installed: its peers are skipped", file=sys.stderr)
    all_results, summaries = {}, {}
    for setting in ("edm", "ddpm"):
        all_results[setting] = accuracy(setting, gmm, K, 200 if a.quick else a.points,
                                         not (a.quick or a.no_calibrate), a.iters)
        summaries[setting] = print_accuracy(setting, all_results[setting])
    ratios = print_overhead(overhead(2 if a.quick else 5))
    plot(all_results, a.plot)
    print("\n### Goals\n")
    for setting, s in summaries.items():
        for n in (10, 20):
            r, c = s[n]["ours"][0] / s[n]["peer"][0], s[n]["calibrated"][0] / s[n]["peer"][0]
            cal = "calibration skipped" if a.quick or a.no_calibrate else \
                f"calibrated {c:.2f}x (goal <= 0.5: {'met' if c <= 0.5 else 'not met'})"
            print(f"- {setting}, NFE {n}: default grid {r:.2f}x best peer (goal <= 0.8: "
                  f"{'met' if r <= 0.8 else 'not met'}), {cal}")
    worst = max(ratios.values())
    print(f"- overhead: worst ours / fastest diffusers of the same order = {worst:.2f} (goal <= 0.5: "
          f"{'met' if worst <= 0.5 else 'not met'})")
    print(f"\nplot: {a.plot}")


if __name__ == "__main__":
    main()
