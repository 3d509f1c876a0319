"""A run directory as a training job holds it: locked by rank 0; I/O errors that name their file."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Iterator

from .distributed import Dist
from .lock import RunLock, RunLockedError


class RunDirectory:
    """One job's hold on a run directory: rank 0 locks it (the other ranks are the same job)."""

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


@contextlib.contextmanager
def naming(path: Path, doing: str = "writing") -> Iterator[None]:
    """Re-raise an OSError inside the block as one that names `path` (a write error alone does not)."""
    try:
        yield
    except OSError as e:
        if e.filename is not None or str(path) in str(e):
            raise
        raise OSError(e.errno, f"{doing} {path} failed: {e.strerror or e}") from e
