"""`torchdiffusion eval`: score a run over every (sampler, NFE) pair, bits/dim, report.json and plots."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .common import add_device_argument, non_negative_int, out_dir, positive_float, positive_int


DEFAULT_NUM, DEFAULT_NFE = 1000, "5,10,20,50"


def ode_tolerance(text: str) -> float:
    """An argparse type: rtol = atol of the likelihood ODE in [1e-8, 1] (tighter ones never finish on a CPU)."""
    value = positive_float(text)
    if not 1e-8 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [1e-8, 1], got {text}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="score a run: FID/KID/precision-recall/IS per sampler x NFE, bits/dim, plots",
                        description="Sample a run for every (sampler, NFE) with fixed seeds, score the samples "
                                    "against held-out data (images: feature-net FID, KID, precision/recall, IS; "
                                    "2-D toys: sliced Wasserstein, MMD), measure bits/dim by the ELBO and the ODE, "
                                    "and write OUT/report.json and PNG plots. See docs/eval.md.")
    ev.add_argument("run", help="run directory or checkpoint file")
    ev.add_argument("--num", type=positive_int(1_000_000), default=None, help="samples per (sampler, NFE) (default 1000)")
    ev.add_argument("--samplers", default=None,
                    help="comma-separated sampler names (default: a few-step student's own sampler, consistency or "
                         "ddim_fewstep, else ddim,dpmpp_2m)")
    ev.add_argument("--nfe", default=None, help="comma-separated denoiser-call budgets per sample (default 5,10,20,50)")
    ev.add_argument("--metrics", default=None, help="images: fid,kid,pr,is,bpd; 2-D toys: swd,mmd,bpd (default all)")
    ev.add_argument("--features", default=None, metavar="FILE_OR_DATASET",
                    help="pytorch-fid Inception weights (.pth), a feature-net file (.safetensors) or a dataset "
                         "name for its cached feature net (default: the run's dataset)")
    ev.add_argument("--feature-epochs", type=positive_int(1000), default=2, help="epochs of a feature net trained if none cached")
    ev.add_argument("--bpd-num", type=positive_int(1_000_000), default=100, help="held-out items for bits/dim")
    ev.add_argument("--elbo-steps", type=positive_int(100_000), default=100, help="strata of the variational bound per item")
    ev.add_argument("--ode-tol", type=ode_tolerance, default=1e-5, help="rtol = atol of the likelihood ODE solve")
    ev.add_argument("--cond", default="auto", choices=["auto", "null", "uniform"],
                    help="class-conditional runs: null label, balanced labels, or auto (null if trained with it)")
    ev.add_argument("--seed", type=non_negative_int, default=0)
    ev.add_argument("--batch-size", type=positive_int(100_000), default=250)
    ev.add_argument("--out", type=out_dir, default=None, help="output directory (default RUN/eval)")
    ev.add_argument("--raw-weights", action="store_true", help="use the raw (non-EMA) weights")
    add_device_argument(ev)
    ev.add_argument("--no-plots", action="store_true", help="skip the PNG plots (no matplotlib needed)")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")
    ev.set_defaults(handler=run)


def run(a: argparse.Namespace) -> dict[str, Any]:
    """Prints a table, returns the JSON summary line."""
    from ..evaluate import BpdOptions, EvalOptions, evaluate_run, parse_list, parse_nfe, summary_table

    given = tuple(flag for flag, value in (("--samplers", a.samplers), ("--nfe", a.nfe), ("--num", a.num),
                                           ("--features", a.features)) if value is not None)
    o = EvalOptions(samplers=[] if a.samplers is None else parse_list(a.samplers, "--samplers"),
                    nfe=parse_nfe(DEFAULT_NFE if a.nfe is None else a.nfe),
                    metrics=None if a.metrics is None else parse_list(a.metrics, "--metrics"),
                    num=DEFAULT_NUM if a.num is None else a.num, sampling_flags=given,
                    features=a.features, feature_epochs=a.feature_epochs, bpd_num=a.bpd_num, out=a.out, seed=a.seed,
                    batch_size=a.batch_size, cond=a.cond, raw_weights=a.raw_weights, plots=not a.no_plots,
                    progress=not a.no_progress and sys.stderr.isatty(), device=a.device,
                    bpd=BpdOptions(elbo_steps=a.elbo_steps, ode_rtol=a.ode_tol, ode_atol=a.ode_tol, seed=a.seed))
    report = evaluate_run(a.run, o)
    print(summary_table(report), flush=True)
    return {"report": str(o.out) + "/report.json", "plots": report["plots"], "seconds": report["seconds"]["total"]}
