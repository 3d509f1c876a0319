"""What the Watch tab reads from a run directory while it trains: metrics.jsonl, the newest sample grids."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MAX_POINTS = 2000   # loss-curve points sent to the page (older ones thinned)
MAX_LOG_BYTES = 64 * 2**20  # metrics.jsonl read at most from its last 64 MiB


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of RUN/metrics.jsonl with a step and a finite-or-not loss; a torn last line (being written) and
    foreign lines are skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - MAX_LOG_BYTES))
        raw = f.read().decode("utf-8", errors="replace")
    rows = []
    for line in raw.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and isinstance(row.get("loss"), (int, float)):
            rows.append(row)
    return rows


def thin(rows: list[dict[str, Any]], limit: int = MAX_POINTS) -> list[dict[str, Any]]:
    """At most limit rows, evenly spaced, the last one kept."""
    if len(rows) <= limit:
        return rows
    stride = -(-len(rows) // limit)
    return rows[::-1][::stride][::-1]


def latest_grids(run_dir: Path, k: int = 4) -> list[Path]:
    """The k newest sample grids RUN/samples/step-*.png, newest first."""
    d = Path(run_dir) / "samples"
    return sorted(d.glob("step-*.png"), reverse=True)[:k] if d.is_dir() else []


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Step, last loss, throughput (images/s) and the mean loss of the last 10 logged steps."""
    if not rows:
        return {"step": 0, "loss": None, "images_per_s": None, "loss_last10": None}
    last = rows[-1]
    tail = [r["loss"] for r in rows[-10:]]
    return {"step": last["step"], "loss": last["loss"], "images_per_s": last.get("images_per_s"),
            "loss_last10": sum(tail) / len(tail)}
