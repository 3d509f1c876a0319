"""Run state outside the model: the host RNG states a resume restores, and the metrics log a resume rewinds."""

from __future__ import annotations

import ast
import json
import math
import os
import random
from pathlib import Path
from typing import Any

import numpy as np


def host_rng_state() -> dict[str, Any]:
    """This process's Python and NumPy RNG states as JSON-safe values (for checkpoint metadata)."""
    np_state = np.random.get_state()
    return {"python": repr(random.getstate()), "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]]}


def set_host_rng_state(state: dict[str, Any]) -> None:
    """Restore what host_rng_state returned; Python's state is parsed as a literal (ints and tuples, no code)."""
    random.setstate(ast.literal_eval(state["python"]))
    s = state["numpy"]
    np.random.set_state((s[0], np.array(s[1], dtype=np.uint32), *s[2:]))


def truncate_log(path: Path, step: int) -> None:
    """Drop metrics lines past `step` (a resumed run logs them again), atomically."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines()
    keep = [ln for ln in lines if ln.strip() and line_step(ln) <= step]
    if len(keep) != len(lines):
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text("".join(ln + "\n" for ln in keep))
            os.replace(tmp, path)
        except OSError as e:  # a full disk: leave no partial file behind, and name the log
            tmp.unlink(missing_ok=True)
            raise OSError(e.errno, f"cutting {path} back to step {step} failed: {e.strerror}") from None


def line_step(line: str) -> float:
    """The step of one metrics line; inf for a line torn by a kill, so truncation drops it."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf  # a torn last line from a killed run
