"""PNG plots of an evaluation: each metric against NFE (one line per sampler), and the training-loss curve."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PLOT_LABELS = {"fid": "FID (lower is better)", "kid": "KID (unbiased MMD^2, lower is better)", "precision": "precision",
               "recall": "recall", "is": "Inception Score (feature-net logits)", "swd": "sliced Wasserstein-2",
               "mmd": "MMD^2 (Gaussian kernels)"}
SCALE: dict[str, float] = {}


def require_matplotlib() -> Any:
    """pyplot on the Agg backend, or a clear error naming the package to install."""
    try:
        import matplotlib
    except ImportError:
        raise ValueError("plots need matplotlib: pip install matplotlib (or pass --no-plots)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _value(entry: Any) -> tuple[float, float | None]:
    """(value, error bar) of a figure stored as a number or as {mean, se | std}."""
    if isinstance(entry, dict):
        return float(entry["mean"]), entry.get("se", entry.get("std"))
    return float(entry), None


def plot_metric_vs_nfe(rows: list[dict[str, Any]], key: str, path: Path, title: str = "") -> Path:
    """One line per sampler of rows[i][key] against the NFE it used, log-x; error bars where the figure has them."""
    plt = require_matplotlib()
    from matplotlib.ticker import NullFormatter, ScalarFormatter
    fig, ax = plt.subplots(figsize=(5.5, 4))
    scale = SCALE.get(key, 1.0)
    for sampler in dict.fromkeys(r["sampler"] for r in rows):
        pts = sorted((r["nfe_used"], *_value(r[key])) for r in rows if r["sampler"] == sampler and key in r)
        nfe = [p[0] for p in pts]
        val = [p[1] * scale for p in pts]
        err = [(p[2] or 0.0) * scale for p in pts]
        ax.errorbar(nfe, val, yerr=err if any(err) else None, marker="o", capsize=3, label=sampler)
    ax.set_xscale("log")
    ax.set_xticks(sorted({r["nfe_used"] for r in rows}))
    ax.get_xaxis().set_major_formatter(ScalarFormatter())
    ax.get_xaxis().set_minor_formatter(NullFormatter())
    ax.set_xlabel("NFE (denoiser calls per sample)")
    ax.set_ylabel(PLOT_LABELS.get(key, key))
    return _finish(plt, fig, ax, path, title)


def _finish(plt, fig, ax, path: Path, title: str) -> Path:
    """Title, grid and legend, then write the figure to path and close it."""
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_loss_curve(metrics_jsonl: Path, path: Path, title: str = "") -> Path | None:
    """Training loss per logged step from a run's metrics.jsonl, with a running mean; None if there is no log."""
    if not metrics_jsonl.is_file():
        return None
    steps, losses = [], []
    for line in metrics_jsonl.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut off by an interrupted run
            continue
        if "loss" in rec and "step" in rec:
            steps.append(rec["step"])
            losses.append(rec["loss"])
    if not steps:
        return None
    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(steps, losses, lw=0.8, alpha=0.6, marker="o" if len(steps) <= 20 else None, label="logged loss")
    w = max(1, len(losses) // 20)
    if w > 1:
        smooth = [sum(losses[max(0, i - w + 1):i + 1]) / len(losses[max(0, i - w + 1):i + 1])
                  for i in range(len(losses))]
        ax.plot(steps, smooth, lw=1.5, label=f"running mean of {w}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    return _finish(plt, fig, ax, path, title)
