"""A run directory as a training job holds it: locked by rank 0, cleared of partial files, moved aside on a
restart; I/O errors that name their file; and why a run whose checkpoints cannot be read is not resumed."""

from __future__ import annotations

import contextlib
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from .checkpoint import Newest, unreadable_lines
from .distributed import Dist
from .lock import RunLock, RunLockedError

# what a restart moves aside: everything a run writes except its lock
RUN_ENTRIES = ("checkpoints", "metrics.jsonl", "tb", "samples", "config.json")
TEMPORARY_GLOB = ".ckpt-*.tmp-*"


class RunDirectory:
    """One job's hold on a run directory: rank 0 locks it (the other ranks are the same job) and tidies it."""

    def __init__(self, path: Path, dist: Dist, say: Callable[[str], None]):
        self.path, self.dist, self.say = path, dist, say
        self._lock, self._locked = RunLock(path), False

    def lock(self) -> None:
        """Take the lock (a no-op when held); every rank raises RunLockedError if it is taken (a collective)."""
        if self._locked:
            return
        refused: RunLockedError | None = None
        if self.dist.is_main:
            try:
                left = self._lock.acquire()
            except RunLockedError as e:
                refused = e
            else:
                if left:
                    self.say(f"taking over {self._lock.path} from a trainer that ended without releasing it ({left})")
        failed = self.dist.mean(float(refused is not None)) > 0 if self.dist.active else refused is not None
        if refused is not None:
            raise refused
        if failed:
            raise RunLockedError(f"rank 0 could not lock run directory {self.path}; see its error")
        self._locked = True

    def release(self) -> None:
        """Give the lock back (a no-op when not held)."""
        self._lock.release()
        self._locked = False

    def prepare(self, restart: bool) -> None:
        """Rank 0, holding the lock: delete partial checkpoints of killed writers; on restart, move the run aside."""
        if self.dist.is_main:
            for p in remove_temporaries(self.path):
                self.say(f"removed {p}: a partial checkpoint left by a process killed while writing it")
            if restart:
                dest, moved = move_aside(self.path)
                if dest is not None:
                    self.say(f"restart: moved {', '.join(moved)} of the previous run into {dest}; starting at step 0")
        self.dist.barrier()


def move_aside(run_dir: Path) -> tuple[Path | None, list[str]]:
    """Move a run's files into RUN/restarted-<UTC time>/ (nothing is deleted); returns (that folder, names moved)."""
    present = [name for name in RUN_ENTRIES if (run_dir / name).exists()]
    if not present:
        return None, []
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    dest, n = run_dir / f"restarted-{stamp}", 1
    while dest.exists():  # two restarts within one second
        dest, n = run_dir / f"restarted-{stamp}-{n}", n + 1
    dest.mkdir()
    for name in present:
        os.replace(run_dir / name, dest / name)  # same filesystem: a rename, never a copy
    return dest, present


def remove_temporaries(run_dir: Path) -> list[Path]:
    """Delete the partial checkpoint files writers left in RUN/checkpoints; returns them.

    Call it only while holding the run's lock: then no live trainer is writing here, so every temporary file
    belongs to a process that died mid-write (its PID may have been reused since, so it is not asked about).
    """
    d = run_dir / "checkpoints"
    found = sorted(d.glob(TEMPORARY_GLOB)) if d.is_dir() else []
    for p in found:
        p.unlink(missing_ok=True)
    return found


@contextlib.contextmanager
def naming(path: Path, doing: str = "writing") -> Iterator[None]:
    """Re-raise an OSError inside the block as one that names `path` (a write error alone does not)."""
    try:
        yield
    except OSError as e:
        if e.filename is not None or str(path) in str(e):
            raise
        raise OSError(e.errno, f"{doing} {path} failed: {e.strerror or e}") from e


def refusal(run_dir: Path, found: Newest) -> str:
    """Why a run with unreadable checkpoints is not resumed, each file and its error, and the two ways on."""
    restart = "pass restart=True (`torchdiffusion train --restart`) to move the whole run aside into " \
              f"{run_dir / 'restarted-<UTC time>'}/ and start from step 0"
    if found.path is None:
        return (f"run directory {run_dir} has {len(found.unreadable)} checkpoint(s) and none can be read; refusing "
                f"to start over them from step 0:" + unreadable_lines(found.unreadable)
                + f"\nMove them out of {run_dir / 'checkpoints'} (a newer torchdiffusion may read them), or {restart}.")
    return (f"run directory {run_dir}: the newest {len(found.unreadable)} checkpoint(s) cannot be read, and resuming "
            f"from the older {found.path.name} (step {found.meta['step']}) would silently lose their steps; "
            f"refusing:" + unreadable_lines(found.unreadable)
            + f"\nIf they are damaged, move them out of {run_dir / 'checkpoints'} to resume from step "
              f"{found.meta['step']}; or {restart}.")
