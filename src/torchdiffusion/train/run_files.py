"""A run directory's files beside the checkpoints: I/O errors that name the file they happened on."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def naming(path: Path, doing: str = "writing") -> Iterator[None]:
    """Re-raise an OSError inside the block as one that names `path` (a write error alone does not)."""
    try:
        yield
    except OSError as e:
        if e.filename is not None or str(path) in str(e):
            raise
        raise OSError(e.errno, f"{doing} {path} failed: {e.strerror or e}") from e
