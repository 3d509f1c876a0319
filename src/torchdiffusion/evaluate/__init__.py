"""Evaluation of trained runs: `eval` (sample metrics over a sampler x NFE grid, bits/dim, report.json and plots) and
`train-features` (the feature classifier the image metrics use)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def eval_command(a: argparse.Namespace) -> dict[str, Any]:
    """`torchdiffusion eval` from parsed arguments; prints a table, returns the JSON summary line."""
    from .likelihood import BpdOptions
    from .report import EvalOptions, evaluate_run, parse_list, parse_nfe, summary_table

    o = EvalOptions(samplers=parse_list(a.samplers, "--samplers"), nfe=parse_nfe(a.nfe),
                    metrics=None if a.metrics is None else parse_list(a.metrics, "--metrics"), num=a.num,
                    features=a.features, feature_epochs=a.feature_epochs, bpd_num=a.bpd_num, out=a.out, seed=a.seed,
                    batch_size=a.batch_size, cond=a.cond, raw_weights=a.raw_weights, plots=not a.no_plots,
                    progress=not a.no_progress and sys.stderr.isatty(),
                    bpd=BpdOptions(elbo_steps=a.elbo_steps, ode_rtol=a.ode_tol, ode_atol=a.ode_tol, seed=a.seed))
    report = evaluate_run(a.run, o)
    print(summary_table(report), flush=True)
    return {"report": str(o.out) + "/report.json", "plots": report["plots"], "seconds": report["seconds"]["total"]}


def train_features_command(a: argparse.Namespace) -> dict[str, Any]:
    """`torchdiffusion train-features`: train, save and report the test accuracy."""
    from .data import train_features

    return train_features(a.dataset, epochs=a.epochs, out=a.out, seed=a.seed)


def __getattr__(name: str) -> Any:  # the heavy modules load on first use, not with the CLI's parser
    if name in ("EvalOptions", "evaluate_run"):
        from . import report
        return getattr(report, name)
    if name in ("train_features", "load_featurizer", "reference_data"):
        from . import data
        return getattr(data, name)
    raise AttributeError(name)


__all__ = ["EvalOptions", "eval_command", "evaluate_run", "load_featurizer", "reference_data", "train_features",
           "train_features_command"]
