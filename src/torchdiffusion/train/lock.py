"""One trainer per run directory: an exclusive `flock` on RUN/.lock that names its holder.

The kernel drops a flock when its holder's last descriptor closes, a SIGKILL included, so a dead trainer never
leaves a stale lock behind; the file itself stays (removing it would let two processes lock two different
inodes under one name). A released lock leaves the file empty, so a file still naming a holder that we can lock
was left by a trainer that died without releasing it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

from .checkpoint import CheckpointError

LOCK_NAME = ".lock"
HOLDER_WAIT_S = 0.5  # how long a refused trainer waits for a just-started holder to write its name


class RunLockedError(CheckpointError):
    """Another process is training in this run directory."""


class RunLock:
    """The exclusive lock on a run directory, taken by `acquire` and given back by `release` (or by dying)."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._file is not None

    def acquire(self) -> str | None:
        """Take the lock or raise RunLockedError naming the holder; returns the holder a dead trainer left, if any."""
        if self._file is not None:
            return None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")  # append mode: opening never truncates the holder's name before we own it
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _wait_for_holder(f)
            f.close()
            raise RunLockedError(f"run directory {self.run_dir} is in use by another trainer ({holder}); two "
                                 f"trainers on one directory would overwrite each other's checkpoints and logs. "
                                 f"Wait for it to finish, stop it, or train into another directory.") from None
        except OSError as e:
            f.close()
            raise OSError(e.errno, f"could not lock {self.path}: {e.strerror} (does this filesystem support "
                                   f"flock?)") from e
        f.seek(0)
        left = f.read().strip()
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                            "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}) + "\n")
        f.flush()
        self._file = f
        return describe_holder(left) if left else None

    def release(self) -> None:
        """Give the lock back, leaving the file empty (a no-op when not held)."""
        f, self._file = self._file, None
        if f is None:
            return
        try:
            f.seek(0)
            f.truncate()
            f.flush()
        except OSError:
            pass  # an unwritable file must not keep the lock: closing below releases it regardless
        finally:
            f.close()  # closing the last descriptor drops the flock

    def __del__(self) -> None:
        self.release()


def describe_holder(text: str) -> str:
    """'PID 123 on host h since T' from the lock file's contents (or what could be read of them)."""
    try:
        h = json.loads(text)
        return f"PID {h['pid']} on host {h['host']}, since {h['since']}"
    except (ValueError, KeyError, TypeError):
        return f"holder unknown; {LOCK_NAME} reads {text[:80]!r}" if text else "holder unknown; it is just starting"


def _wait_for_holder(f: IO[str]) -> str:
    """The holder's description; a holder that has locked but not yet written its name gets a moment to do so."""
    deadline = time.monotonic() + HOLDER_WAIT_S
    while True:
        f.seek(0)
        text = f.read().strip()
        if text or time.monotonic() >= deadline:
            return describe_holder(text)
        time.sleep(0.02)
