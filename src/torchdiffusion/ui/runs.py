"""The runs the page offers: run directories under the folder it serves, each model loaded once (reloaded when its
run writes a newer checkpoint) and used by one request at a time."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..train.checkpoint import list_checkpoints

MAX_DEPTH = 3  # folders below the served one searched for runs


def is_run(path: Path) -> bool:
    """A run directory: it holds checkpoints or a training log."""
    return path.is_dir() and (bool(list_checkpoints(path)) or (path / "metrics.jsonl").is_file())


def find_runs(root: str | Path) -> dict[str, Path]:
    """Name (path relative to root, "." for root itself) -> run directory, for root and folders up to MAX_DEPTH
    below it, sorted by name; a run's own subfolders (checkpoints, samples, restarted-*) are not searched."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder; give a run directory or a folder of runs")
    found: dict[str, Path] = {}

    def walk(d: Path, depth: int) -> None:
        if is_run(d):
            found[str(d.relative_to(root))] = d
            return
        if depth < MAX_DEPTH:
            for sub in sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")):
                walk(sub, depth + 1)

    walk(root, 0)
    return dict(sorted(found.items()))


class Models:
    """Loaded models by run name, each behind its own lock, so one request at a time uses a model."""

    def __init__(self, root: str | Path, device: str = "cpu"):
        self.root, self.device = Path(root), device
        self._loaded: dict[str, tuple[Path, object]] = {}  # name -> (checkpoint file, LoadedRun)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def names(self, trained_only: bool = True) -> list[str]:
        """The runs under root (those with a checkpoint when trained_only)."""
        runs = find_runs(self.root)
        return [n for n, p in runs.items() if not trained_only or list_checkpoints(p)]

    def path(self, name: str) -> Path:
        """The run directory of a name the page offered (a name from elsewhere is refused)."""
        runs = find_runs(self.root)
        if name not in runs:
            raise ValueError(f"no run {name!r} under {self.root}; pick one of: {', '.join(runs) or '(none)'}")
        return runs[name]

    @contextmanager
    def use(self, name: str) -> Iterator[object]:
        """The run's LoadedRun (its newest checkpoint), held exclusively for the block."""
        path = self.path(name)
        with self._guard:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            yield self._load(name, path)

    def _load(self, name: str, path: Path) -> object:
        from ..loading import load_run

        ckpts = list_checkpoints(path)
        if not ckpts:
            raise ValueError(f"run {name!r} has no checkpoint yet; wait for its first one")
        cached = self._loaded.get(name)
        if cached is not None and cached[0] == ckpts[-1]:
            return cached[1]
        loaded = load_run(path, device=self.device)
        if loaded.config.loss.kind == "classifier":
            raise ValueError(f"run {name!r} is a noise-conditional classifier, not a diffusion model")
        self._loaded[name] = (ckpts[-1], loaded)
        return loaded
