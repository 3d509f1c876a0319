"""Few-step students against the exact probability-flow map of random 2-D Gaussian mixtures (torchdiffusion.distill).

The teacher is the analytic mixture's exact denoiser on sigma in [0.002, 80]; its probability-flow map from 80 z is
computed by scipy's DOP853 at rtol = atol = 1e-10 (samplers_gmm.flow_map). Students are MLPs (hidden 128, depth 3)
trained for --steps steps (batch 256) by:

  progressive   Salimans & Ho 2022: 16 -> 8 -> 4 -> 2 -> 1 DDIM steps (edm preconditioning), the 2- and 1-step
                rounds' students scored;
  consistency   consistency distillation (Song et al. 2023): Heun teacher steps on 18 Karras levels, EMA target;
  ict           consistency training without the teacher (Song & Dhariwal 2023), the loss `loss.kind: consistency`;
  reflow        rectified flow's reflow (Liu et al. 2023) on 8192 exact-teacher pairs (Heun, 63 calls each);
  cfm / ot-cfm  flow matching from data, independent or minibatch-OT coupled (Tong et al. 2024): no teacher.

Scores on 2000 held-out noises z: the map error, mean ||x - Phi(80 z)|| per sample, where the student is a map
(for the stochastic multistep consistency sampler at 2 calls it is not, and only W2 applies), and W2, the exact
2-Wasserstein distance (POT) between the 2000 samples and 2000 fresh exact mixture draws (its floor: two exact
sample sets, "exact"). Beside them, the best deterministic ODE sampler on the exact denoiser at the same calls and
at 4x, chosen on the tuning mixtures. Straightness (Liu et al. 2023, eq. 7, in flow time) of the exact teacher's
paths vs the reflowed and OT-coupled students'. Learning rates are chosen per method on tuning seeds A, and all is
reported on held-out seeds B.

    nice -n 5 python benchmarks/fewstep_gmm.py --max-cpu-minutes 15 [--plot outputs/fewstep_paths.png]

docs/figures/fewstep_paths.png is drawn by benchmarks/fewstep_paths.py (two mixtures, cheap); --plot draws the same
figure for the first held-out mixture and this run's students.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from samplers_gmm import flow_map  # noqa: E402

from torchdiffusion.analytic import GaussianMixture  # noqa: E402
from torchdiffusion.distill import (ConsistencyDistiller, ProgressiveDistiller, ReflowDistiller, fit,  # noqa: E402
                                    reflow_pairs, straightness)
from torchdiffusion.losses import couple, diffusion_loss, sample_t  # noqa: E402
from torchdiffusion.losses.consistency import consistency_training_loss  # noqa: E402
from torchdiffusion.model_denoiser import ModelDenoiser  # noqa: E402
from torchdiffusion.nn.mlp import MLP, MLPConfig  # noqa: E402
from torchdiffusion.processes import EDM, Flow  # noqa: E402
from torchdiffusion.sampling import sample  # noqa: E402
from torchdiffusion.train.ema import ema_decay_at, make_ema, update_ema  # noqa: E402

SMAX, N_EVAL, K = 80.0, 2000, 6
METHODS = ("progressive", "consistency", "ict", "reflow", "cfm", "ot-cfm")
LRS = (1e-3, 3e-3)
ODE = ("euler", "heun", "dpmpp_2m", "ipndm", "unipc", "dpm_solver_2", "dpmpp_3m")


def mixture(seed: int) -> GaussianMixture:
    """K components in 2-D: means ~ 1.5 N(0, I), per-coordinate stds in [0.1, 0.3], weights in [0.5, 1.5]."""
    g = torch.Generator().manual_seed(seed)
    means = 1.5 * torch.randn(K, 2, generator=g, dtype=torch.float64)
    std = 0.1 + 0.2 * torch.rand(K, 2, generator=g, dtype=torch.float64)
    return GaussianMixture(0.5 + torch.rand(K, generator=g, dtype=torch.float64), means, std**2)


def mlp(process: Any, prediction: str, seed: int) -> ModelDenoiser:
    torch.manual_seed(seed)
    return ModelDenoiser(MLP(MLPConfig(dim=2, hidden=128, depth=3)), process, prediction,
                         sigma_data=0.5)


class DataDistiller:
    """Teacher-free training in the Distiller shape: iCT's consistency loss, or (OT-)CFM on a linear flow."""

    def __init__(self, kind: str, student: ModelDenoiser, total: int):
        self.kind, self.student, self.total, self.step = kind, student, total, 0
        self.ema = make_ema(student)

    def loss(self, x0: torch.Tensor, generator: torch.Generator, **cond: Any) -> torch.Tensor:
        eps = torch.randn(x0.shape, generator=generator)
        if self.kind == "ict":
            u = torch.rand(x0.shape[0], generator=generator, dtype=torch.float64)
            return consistency_training_loss(self.student, x0, u=u, eps=eps, progress=self.step / self.total)
        eps = couple("ot" if self.kind == "ot-cfm" else "independent", x0, eps)
        t = sample_t(self.student.process, x0.shape[0], generator=generator, method="logit_normal")
        return diffusion_loss(self.student, x0, t=t, eps=eps)

    def after_step(self, step: int, total: int) -> None:
        self.step = step
        update_ema(self.ema, self.student, ema_decay_at(step, 0.999))


def train(method: str, gmm: GaussianMixture, lr: float, steps: int, seed: int, cpu_minutes: float) -> dict[int, Any]:
    """{calls: a sampling function z -> x} of the method's students."""
    g = torch.Generator().manual_seed(seed)
    draw = lambda n, gg: (gmm.sample(n, generator=gg, dtype=torch.float32)[0], {})  # noqa: E731
    if method == "progressive":
        d = ProgressiveDistiller(gmm, mlp(EDM(), "edm", seed), start_steps=16)
    elif method == "consistency":
        d = ConsistencyDistiller(gmm, mlp(EDM(), "consistency", seed), levels=18)
    elif method == "ict":
        d = DataDistiller("ict", mlp(EDM(), "consistency", seed), steps)
    elif method == "reflow":
        z = torch.randn(8192, 2, generator=g, dtype=torch.float64)
        d = ReflowDistiller((z.float(), reflow_pairs(gmm, z, nfe=63).float()), mlp(Flow(), "velocity", seed))
    else:
        d = DataDistiller(method, mlp(Flow(), "velocity", seed), steps)
    opt = torch.optim.Adam(d.student.parameters(), lr=lr)
    fit(d, draw, opt, total=steps, batch_size=256, generator=g, max_cpu_minutes=cpu_minutes)
    if method == "progressive":
        d.finish()
        students = {}
        for n in (1, 2):
            m = make_ema(d.student)
            m.backbone.load_state_dict(d.snapshots[n])
            students[n] = m
        return {n: sampler(students[n], "ddim_fewstep", n) for n in (1, 2)}
    kind = "consistency" if method in ("consistency", "ict") else "ddim_fewstep"
    return {n: sampler(d.ema, kind, n) for n in (1, 2)} | {"model": d.ema}


def sampler(model: ModelDenoiser, method: str, n: int):
    """z -> n-call samples; a flow student starts from its own prior scale, an EDM one from 80 z."""
    def run(z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            x = z.float() * model.process.prior_std_ve()
            return sample(model, x, method=method, nfe=n, generator=torch.Generator().manual_seed(7)).double()
    return run


def w2(a: torch.Tensor, b: torch.Tensor) -> float:
    """Exact W2 between two equal-size empirical measures (POT's network simplex)."""
    import ot

    cost = torch.cdist(a.double(), b.double()).pow(2).numpy()
    w = torch.full((len(a),), 1.0 / len(a), dtype=torch.float64).numpy()
    return math.sqrt(float(ot.emd2(w, w, cost)))


def map_error(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float((x - ref).norm(dim=1).mean())


class Problem:
    """One mixture with its evaluation noise, exact map and exact reference samples."""

    def __init__(self, seed: int):
        self.gmm = mixture(seed)
        g = torch.Generator().manual_seed(10_000 + seed)
        self.z = torch.randn(N_EVAL, 2, generator=g, dtype=torch.float64)
        self.exact = flow_map(self.gmm, SMAX * self.z, SMAX, [0.0])[0.0]
        self.ref = self.gmm.sample(N_EVAL, generator=g)[0]

    def score(self, x: torch.Tensor, is_map: bool = True) -> tuple[float, float]:
        return (map_error(x, self.exact) if is_map else float("nan")), w2(x, self.ref)


def ode_scores(p: Problem, nfe: int) -> dict[str, tuple[float, float]]:
    out = {}
    for m in ODE:
        try:
            out[m] = p.score(sample(p.gmm, SMAX * p.z, method=m, nfe=nfe))
        except ValueError:  # a method whose one step costs more than nfe
            pass
    return out


def mean(rows: list[tuple[float, float]]) -> tuple[float, float]:
    return tuple(sum(r[i] for r in rows) / len(rows) for i in range(2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-cpu-minutes", type=float, default=15.0, help="CPU budget of the whole benchmark")
    ap.add_argument("--steps", type=int, default=1500, help="optimizer steps per student")
    ap.add_argument("--tune-seeds", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=2, help="held-out mixture seeds B")
    ap.add_argument("--plot", default=None, help="write the 2-D path figure here (PNG)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    start = time.process_time()
    trainings = len(METHODS) * (len(LRS) * args.tune_seeds + args.seeds)
    per = 0.8 * args.max_cpu_minutes / trainings  # a CPU cap per student; the rest is evaluation
    seeds_a, seeds_b = list(range(args.tune_seeds)), list(range(1000, 1000 + args.seeds))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
          f"{torch.__version__}, 1 thread; {args.steps} steps per student, at most {per:.2f} CPU-min each\n")

    print(f"## Tuning on mixture seeds A = {seeds_a}: learning rate by mean 1-call + 2-call W2\n")
    probs_a = [Problem(s) for s in seeds_a]
    chosen, best_ode = {}, {}
    for method in METHODS:
        best = None
        for lr in LRS:
            obj = 0.0
            for p in probs_a:
                st = train(method, p.gmm, lr, args.steps, 0, per)
                obj += sum(p.score(st[n](p.z))[1] for n in (1, 2)) / len(probs_a)
            print(f"  {method} lr={lr:g}: {obj:.3f}", flush=True)
            if best is None or obj < best[0]:
                best = (obj, lr)
        chosen[method] = best[1]
    for nfe in (1, 2, 4, 8):
        rows = [ode_scores(p, nfe) for p in probs_a]
        best_ode[nfe] = min(rows[0], key=lambda m: sum(r[m][0] for r in rows))
    print(f"  chosen: {chosen}; best ODE sampler by calls: {best_ode}\n")

    print(f"## Held-out mixture seeds B = {seeds_b} (means over seeds)\n")
    probs_b = [Problem(s) for s in seeds_b]
    table: dict[str, dict[int, tuple[float, float]]] = {}
    straight: dict[str, float] = {"exact teacher (PF-ODE)": sum(straightness(p.gmm, p.z) for p in probs_b) / len(probs_b)}
    paths: dict[str, Any] = {}
    for method in METHODS:
        res = {1: [], 2: []}
        s_vals = []
        for p in probs_b:
            st = train(method, p.gmm, chosen[method], args.steps, 1, per)
            for n in (1, 2):
                stochastic = n > 1 and method in ("consistency", "ict")
                res[n].append(p.score(st[n](p.z), is_map=not stochastic))
            if method in ("reflow", "cfm", "ot-cfm"):
                s_vals.append(straightness(st["model"], p.z.float()))
                if p is probs_b[0]:
                    paths[method] = st["model"]
        table[method] = {n: mean(res[n]) for n in (1, 2)}
        if s_vals:
            straight[method] = sum(s_vals) / len(s_vals)
        print(f"  {method}: done ({(time.process_time() - start) / 60:.1f} CPU-min)", flush=True)
    exact_floor = sum(w2(p.exact, p.ref) for p in probs_b) / len(probs_b)
    print("\n| method | 1 call: map error | 1 call: W2 | 2 calls: map error | 2 calls: W2 |")
    print("|---|---|---|---|---|")
    for method in METHODS:
        (e1, w1), (e2, w2_) = table[method][1], table[method][2]
        f = lambda v: "-" if math.isnan(v) else f"{v:.3f}"  # noqa: E731
        print(f"| {method} (lr {chosen[method]:g}) | {f(e1)} | {f(w1)} | {f(e2)} | {f(w2_)} |")
    for nfe in (1, 2, 4, 8):
        e, w = mean([ode_scores(p, nfe)[best_ode[nfe]] for p in probs_b])
        print(f"| ODE {best_ode[nfe]} on the exact teacher, {nfe} calls | {e:.3f} | {w:.3f} | | |")
    print(f"| exact map (W2 floor: two exact sample sets) | 0 | {exact_floor:.3f} | | |")
    print("\n| paths | straightness S (0 = straight) |")
    print("|---|---|")
    for k, v in straight.items():
        print(f"| {k} | {v:.4f} |")
    if args.plot:
        plot(probs_b[0], paths, args.plot)
    print(f"\nCPU time: {(time.process_time() - start) / 60:.1f} min")


def plot(p: Problem, students: dict[str, Any], path: str) -> None:
    """The path figure of benchmarks/fewstep_paths.py for this mixture and these students (one row)."""
    from fewstep_paths import path_straightness
    from fewstep_paths import plot as draw

    s_vals = {"teacher": path_straightness(p.gmm, p.z)}
    s_vals.update({k: path_straightness(m, p.z) for k, m in students.items()})
    draw([(p.gmm, p.z[:150], students, s_vals)], path)


if __name__ == "__main__":
    main()
