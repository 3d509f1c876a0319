"""`torchdiffusion eval`: sample a run over every (sampler, NFE) pair, score the samples against held-out data, measure
bits/dim, and write report.json with PNG plots."""

from __future__ import annotations

import json
import math
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..devices import resolve_device
from ..loading import load_run
from ..metrics import (fid_from_features, inception_score, kid, mmd_gaussian, precision_recall,
                       sliced_wasserstein)
from ..sampling import METHODS, budget_grid
from .data import Reference, is_toy, load_featurizer, reference_data
from .likelihood import BpdOptions, elbo_bpd, ode_bpd

Tensor = torch.Tensor
IMAGE_METRICS = ("fid", "kid", "pr", "is", "bpd")
TOY_METRICS = ("swd", "mmd", "bpd")
CONDITIONING = ("auto", "null", "uniform")
MMD_BANDWIDTHS = (0.1, 0.2, 0.5, 1.0, 2.0)  # toy data has sigma_data = 1: a sum of kernels across its scales


STUDENT_SAMPLERS = ("consistency", "ddim_fewstep")  # samplers of few-step students (distill, loss.kind consistency)
DEFAULT_SAMPLERS = ["ddim", "dpmpp_2m"]


@dataclass
class EvalOptions:
    samplers: list[str]                # empty: the run's own sampler for a student, else DEFAULT_SAMPLERS
    nfe: list[int]
    metrics: list[str] | None = None   # None: every metric for the data kind
    num: int = 1000
    features: str | None = None       # Inception .pth, feature-net .safetensors, or a dataset name (default: the run's)
    feature_epochs: int = 2            # epochs of a feature net trained here because none is cached
    bpd_num: int = 100
    out: str | Path | None = None      # default: <run>/eval
    seed: int = 0
    batch_size: int = 250
    cond: str = "auto"                 # class-conditional runs: null label, uniform labels, or auto (null if trained)
    raw_weights: bool = False
    device: str = "auto"               # auto | cpu | cuda[:N]
    plots: bool = True
    progress: bool = False
    bpd: BpdOptions = field(default_factory=BpdOptions)
    # flags the caller set that only sample-based evaluation reads (--samplers, --nfe, --num, --features): a token
    # run, scored by its held-out likelihood alone, refuses them rather than ignoring them
    sampling_flags: tuple[str, ...] = ()


def parse_list(text: str | list[str], what: str) -> list[str]:
    items = text if isinstance(text, list) else [s.strip() for s in text.split(",")]
    items = [s for s in items if s]
    if not items:
        raise ValueError(f"{what}: give at least one, comma-separated")
    return list(dict.fromkeys(items))


def parse_nfe(text: str | list[int]) -> list[int]:
    try:
        nfe = [int(s) for s in parse_list([str(v) for v in text] if isinstance(text, list) else text, "--nfe")]
    except ValueError as e:
        raise ValueError(f"--nfe must be comma-separated positive integers, got {text!r}") from e
    if min(nfe) < 1:
        raise ValueError(f"--nfe values must be >= 1, got {nfe}")
    return sorted(nfe)


def validate(o: EvalOptions, toy: bool) -> list[str]:
    """The metrics to compute; clear errors for unknown names and sizes."""
    if o.num < 2:
        raise ValueError(f"--num must be >= 2 (metrics compare sample sets), got {o.num}")
    unknown = [s for s in o.samplers if s not in METHODS]
    if unknown:
        raise ValueError(f"unknown sampler(s) {unknown}; choose from {', '.join(sorted(METHODS))}")
    allowed = TOY_METRICS if toy else IMAGE_METRICS
    metrics = list(allowed) if o.metrics is None else o.metrics
    bad = [m for m in metrics if m not in allowed]
    if bad:
        kind = "2-D toy" if toy else "image"
        raise ValueError(f"unknown metric(s) {bad} for an {kind} run; choose from {', '.join(allowed)}")
    if o.cond not in CONDITIONING:
        raise ValueError(f"--cond must be one of {CONDITIONING}, got {o.cond!r}")
    if "bpd" in metrics and o.bpd_num < 1:
        raise ValueError(f"--bpd-num must be >= 1, got {o.bpd_num}")
    return metrics


def command_line(run: str | Path, o: EvalOptions, metrics: list[str]) -> str:
    """The eval command with every effective option, so the report can be reproduced."""
    args = ["torchdiffusion", "eval", str(run), "--num", str(o.num), "--samplers", ",".join(o.samplers),
            "--nfe", ",".join(map(str, o.nfe)), "--metrics", ",".join(metrics), "--seed", str(o.seed),
            "--cond", o.cond, "--out", str(o.out)]
    if o.features:
        args += ["--features", o.features]
    if "bpd" in metrics:
        args += ["--bpd-num", str(o.bpd_num), "--elbo-steps", str(o.bpd.elbo_steps), "--ode-tol",
                 str(o.bpd.ode_rtol)]
    if o.raw_weights:
        args.append("--raw-weights")
    return shlex.join(args)


def quantize(x: Tensor) -> Tensor:
    """Samples clamped to [-1, 1] and rounded to the 8-bit lattice, as if saved to PNG and read back."""
    return torch.round((x.clamp(-1, 1) + 1) * 127.5) / 127.5 - 1


def sample_conditioning(num_classes: int, mode: str, cond_drop: float, num: int) -> tuple[dict[str, Tensor], str]:
    if not num_classes:
        return {}, "unconditional model"
    if mode == "auto":
        mode = "null" if cond_drop > 0 else "uniform"
    if mode == "null":
        return ({"class_labels": torch.full((num,), num_classes, dtype=torch.long)},
                f"null label {num_classes} (unconditional sampling, guidance scale 1)")
    return ({"class_labels": torch.arange(num) % num_classes},
            f"labels i mod {num_classes}, balanced over classes (conditional sampling, guidance scale 1)")


class Scorer:
    """Every requested sample metric against one reference set; the reference's features are computed once."""

    def __init__(self, ref: Reference, metrics: list[str], toy: bool, num: int, featurizer: Any, seed: int):
        self.metrics, self.toy, self.num, self.seed = metrics, toy, num, seed
        self.featurizer = featurizer
        self.ref = ref
        if not toy and set(metrics) & {"fid", "kid", "pr", "is"}:
            self.ref_feats, _ = featurizer.embed(ref.x)

    def score(self, x: Tensor) -> dict[str, Any]:
        g = torch.Generator().manual_seed(self.seed)
        out: dict[str, Any] = {}
        if self.toy:
            y = self.ref.x[:max(len(x), 2)]
            if "swd" in self.metrics:
                out["swd"] = sliced_wasserstein(x, y, projections=256, generator=g)
            if "mmd" in self.metrics:
                out["mmd"] = mmd_gaussian(x, y, bandwidths=MMD_BANDWIDTHS)
            return out
        if not set(self.metrics) & {"fid", "kid", "pr", "is"}:
            return out
        feats, logits = self.featurizer.embed(x)
        if "fid" in self.metrics:
            out["fid"] = fid_from_features(self.ref_feats, feats)
        if "kid" in self.metrics:
            out["kid"] = kid(self.ref_feats, feats, subsets=100, subset_size=1000, generator=g)
        if "pr" in self.metrics:
            k = min(3, len(x) - 1)
            out.update(precision_recall(self.ref_feats[:len(x)], feats, k=k))
        if "is" in self.metrics:
            out["is"] = inception_score(logits, splits=min(10, len(x)))
        return out


def _finite(v: Any) -> Any:
    """JSON-safe: NaN and infinities become None (strict JSON has no NaN)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(w) for k, w in v.items()}
    if isinstance(v, list):
        return [_finite(w) for w in v]
    return v


def _sample_rows(model: Any, shape: tuple[int, ...], o: EvalOptions, cond: dict[str, Tensor], scorer: Scorer,
                 toy: bool, out: Path, decode: Any = None) -> list[dict[str, Any]]:
    """One row per (sampler, NFE): o.num samples drawn, (a latent model's) decoded, scored and (images) saved as
    PNG tiles; the decoding time is part of the sampling time."""
    from ..data import save_image_tiles
    from ..generate import generate

    rows = []
    bar = tqdm([(s, n) for s in o.samplers for n in o.nfe], desc="eval", disable=not o.progress, dynamic_ncols=True)
    for sampler, nfe in bar:
        bar.set_postfix_str(f"{sampler} nfe={nfe}")
        m = METHODS[sampler]
        options: dict[str, Any] = {}
        if m.evals_per_step is None:
            steps = nfe
        elif m.steps_for(nfe, options) < 1:
            steps = 0
        else:  # the grid `sample` runs at this budget
            steps = len(budget_grid(model, sampler, nfe, options=options)) - 1
        if steps < 1:
            rows.append({"sampler": sampler, "nfe_requested": nfe, "skipped": f"nfe {nfe} is below one step"})
            continue
        t0 = time.perf_counter()
        x, used = generate(model, shape, o.num, sampler=sampler, nfe=nfe, seed=o.seed, batch_size=o.batch_size,
                           cond=cond, **options)
        if decode is not None:
            x = decode(x)
        t_sample = time.perf_counter() - t0
        if not toy:
            x = quantize(x)
        t0 = time.perf_counter()
        row = {"sampler": sampler, "nfe_requested": nfe, "nfe_used": used, "steps": steps,
               "sample_seconds": round(t_sample, 2), **scorer.score(x)}
        row["metric_seconds"] = round(time.perf_counter() - t0, 2)
        row["finite_fraction"] = float(torch.isfinite(x).all(dim=tuple(range(1, x.ndim))).double().mean())
        if not toy:
            save_image_tiles(x[:64], out / f"samples_{sampler}_nfe{nfe}.png")
        rows.append(row)
    bar.close()
    return rows


def _bpd_section(model: Any, ref: Any, num_classes: int, toy: bool, o: EvalOptions) -> dict[str, Any]:
    """ELBO and ODE bits per dimension of the first o.bpd_num reference items (null label for a conditional model)."""
    m_num = min(o.bpd_num, len(ref.x))
    device = next(model.parameters()).device
    x0 = ref.x[:m_num].to(device)
    cond = {"class_labels": torch.full((m_num,), num_classes, dtype=torch.long, device=device)} if num_classes else {}
    units = ("bits per dimension of the continuous density (no dequantization)" if toy else
             "bits per dimension of 8-bit data (both are upper bounds in expectation)")
    return {"num": m_num, "data": ref.source,
            "conditioning": "null label: unconditional p(x)" if num_classes else "unconditional model",
            "elbo": elbo_bpd(model, x0, cond, toy, o.bpd), "ode": ode_bpd(model, x0, cond, toy, o.bpd),
            "units": units}


def _plots(rows: list[dict[str, Any]], toy: bool, title: str, dataset: str, out: Path, run_dir: Path) -> list[str]:
    """Metric-vs-NFE plots of the scored rows and the run's training-loss curve; returns the paths written."""
    from .plots import plot_loss_curve, plot_metric_vs_nfe

    plots = []
    done = [r for r in rows if "nfe_used" in r]
    for key in (["swd", "mmd"] if toy else ["fid", "kid", "precision", "recall", "is"]):
        if done and any(key in r for r in done):
            plots.append(str(plot_metric_vs_nfe(done, key, out / f"{key}_vs_nfe.png", title)))
    loss = plot_loss_curve(run_dir / "metrics.jsonl", out / "training_loss.png", f"{dataset} training")
    if loss is not None:
        plots.append(str(loss))
    return plots


def evaluate_run(run: str | Path, o: EvalOptions) -> dict[str, Any]:
    """Evaluate a run (directory or checkpoint); writes <out>/report.json and the plots, returns the report."""
    from .plots import require_matplotlib

    t_start = time.perf_counter()
    if o.plots:
        require_matplotlib()  # fail before the expensive part
    loaded = load_run(run, raw_weights=o.raw_weights, device=resolve_device(o.device))
    if loaded.discrete:  # a token run: held-out bits per character (evaluate/text.py)
        from .text import evaluate_text, refuse_sampling_flags
        refuse_sampling_flags(run, loaded, o.sampling_flags)
        return evaluate_text(run, loaded, o)
    model, cfg, meta, shape = loaded.model, loaded.config, loaded.meta, loaded.data_shape
    toy = len(shape) == 1 or is_toy(cfg.data.name)
    student = cfg.sample.sampler in STUDENT_SAMPLERS or "distill" in meta or cfg.model.prediction == "consistency"
    if not o.samplers:  # a student is scored with its own few-step sampler (N steps = N calls)
        o.samplers = [cfg.sample.sampler] if cfg.sample.sampler in STUDENT_SAMPLERS else list(DEFAULT_SAMPLERS)
    metrics = validate(o, toy)
    if student and o.metrics is None:  # default metrics: a student's samples come from a few-step map, not its ODE
        metrics = [m for m in metrics if m != "bpd"]
    if cfg.model.prediction == "consistency" and "bpd" in metrics:
        raise ValueError(f"{run} is a consistency model: its network maps x_sigma to the end of the probability-flow "
                         f"path, not to E[x0 | x_sigma], so it defines neither a variational bound nor an ODE "
                         f"likelihood; drop bpd from --metrics")
    if loaded.codec is not None and o.metrics is None:  # default metrics: a latent model has no image likelihood
        metrics = [m for m in metrics if m != "bpd"]
    if loaded.codec is not None and "bpd" in metrics:
        raise ValueError(f"{run} is a latent diffusion model: its likelihood is of autoencoder latents, not of "
                         f"images, so bits per dimension are not reported; drop bpd from --metrics")
    ckpt = Path(meta["path"])
    # a run's own checkpoint (RUN/checkpoints/ckpt-N) reports into RUN/eval; a loose file into a folder beside it
    in_run = Path(run).is_dir() or ckpt.parent.name == "checkpoints"
    run_dir = Path(run) if Path(run).is_dir() else (ckpt.parent.parent if in_run else ckpt.parent)
    out = Path(o.out) if o.out else (run_dir / "eval" if in_run else ckpt.parent / f"eval-{ckpt.stem}")
    o.out = out
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"command": command_line(run, o, metrics), "run": str(run),
                              "checkpoint": meta["path"], "train_step": meta.get("step"),
                              "weights": "raw" if o.raw_weights else "EMA", "dataset": cfg.data.name,
                              "data_kind": "toy2d" if toy else "image", "shape": list(shape), "num": o.num,
                              **({"latent": {k: loaded.meta["latent"][k] for k in ("scale", "latent_shape",
                                                                                    "image_shape", "source")}}
                                 if loaded.codec is not None else {}),
                              "seed": o.seed, "metrics": metrics}
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    ref = reference_data(cfg.data.name, cfg.data.options, cfg.data.limit, num=None if not toy else o.num,
                         seed=o.seed)
    featurizer, feat_info = None, None
    if not toy and set(metrics) & {"fid", "kid", "pr", "is"}:
        featurizer, feat_info = load_featurizer(o.features, cfg.data.name, epochs=o.feature_epochs)
    scorer = Scorer(ref, metrics, toy, o.num, featurizer, o.seed)
    seconds["reference_and_features"] = round(time.perf_counter() - t0, 2)
    report["reference"] = {"source": ref.source, "num": len(ref.x)}
    if feat_info is not None:
        if hasattr(featurizer, "net"):  # how well the feature classifier recognises the reference images
            from ..metrics.features import accuracy
            feat_info["accuracy_on_reference"] = accuracy(featurizer.net, ref.x, ref.labels)
        report["features"] = feat_info
        if "pr" in metrics:
            report["reference"]["pr_num"] = min(o.num, len(ref.x))

    num_classes = int(cfg.model.params.get("num_classes", 0) or 0)
    cond, cond_text = sample_conditioning(num_classes, o.cond, float(cfg.train.cond_drop), o.num)
    report["conditioning"] = cond_text

    # floor: real data (training items) scored like samples
    if not toy:
        from ..data import load_dataset
        real, _ = load_dataset(cfg.data.name, **cfg.data.options)
        floor = scorer.score(real[:o.num])
        report["real_data_floor"] = {"what": f"{min(o.num, len(real))} training images scored as if samples",
                                     **floor}

    rows = _sample_rows(model, shape, o, cond, scorer, toy, out, loaded.decode if loaded.codec else None)
    report["results"] = rows
    seconds["sampling_and_metrics"] = round(sum(r.get("sample_seconds", 0) + r.get("metric_seconds", 0)
                                                for r in rows), 2)

    if "bpd" in metrics:
        report["bpd"] = _bpd_section(model, ref, num_classes, toy, o)
        seconds["bpd_elbo"] = report["bpd"]["elbo"]["seconds"]
        seconds["bpd_ode"] = report["bpd"]["ode"]["seconds"]

    plots = _plots(rows, toy, f"{cfg.data.name}, step {meta.get('step')}, N={o.num}", cfg.data.name, out, run_dir) \
        if o.plots else []
    report["plots"] = plots
    seconds["total"] = round(time.perf_counter() - t_start, 2)
    report["seconds"] = seconds
    report = _finite(report)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def summary_table(report: dict[str, Any]) -> str:
    """The report's figures as a plain-text table."""
    lines = []
    for unit, items in (("char", "windows"), ("dim", "images")):
        if f"bits_per_{unit}" in report:  # a token run: text, or an image token set
            n = report["nll"]
            lines.append(f"bits/{unit} ({report['model']}): {n['bits_per_token']:.4f} ± {n['std_err']:.4f} on "
                         f"{n['windows']} held-out {items} ({n['tokens']} {unit}s)")
    for r in report.get("results", []):
        if "nfe_used" not in r:
            lines.append(f"{r['sampler']:>10s} nfe {r['nfe_requested']:>3d}: {r['skipped']}")
            continue
        parts = [f"{r['sampler']:>10s} nfe {r['nfe_used']:>3d}"]
        for k in ("fid", "swd", "mmd"):
            if k in r:
                parts.append(f"{k} {r[k]:.4g}")
        if "kid" in r:
            parts.append(f"kid {r['kid']['mean']:.4g}±{r['kid']['se']:.2g}")
        if "precision" in r:
            parts.append(f"P {r['precision']:.3f} R {r['recall']:.3f}")
        if "is" in r:
            parts.append(f"IS {r['is']['mean']:.3f}")
        parts.append(f"{r['sample_seconds']:.1f}s")
        lines.append("  ".join(parts))
    if "bpd" in report:
        for k in ("elbo", "ode"):
            b = report["bpd"][k]
            se = "n/a" if b["se"] is None else f"{b['se']:.4f}"
            lines.append(f"bpd ({k}): {b['bpd']:.4f} ± {se} on {b['num']} items, {b['seconds']:.1f}s")
    return "\n".join(lines)
