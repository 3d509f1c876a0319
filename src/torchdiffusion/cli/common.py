"""Arguments several commands share."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from ..devices import DEVICE_CHOICES


def add_device_argument(p: argparse.ArgumentParser) -> None:
    """--device auto | cpu | cuda[:N]."""
    p.add_argument("--device", default="auto", metavar="DEVICE",
                   help=f"where to run: {DEVICE_CHOICES} (auto: the CUDA GPU when there is one, else the CPU)")


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def positive_int(bound: int):
    """An argparse type: an integer in [1, bound] (bound lifted by TORCHDIFFUSION_NO_LIMITS=1)."""
    def parse(text: str) -> int:
        from ..config import check_bound

        value = _int(text)
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
        try:
            check_bound("value", value, bound)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix("value: ")) from None
        return value
    return parse


def non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0 (seeds)."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _float(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def budget(text: str) -> float:
    """An argparse type: a finite number of minutes > 0."""
    value = _float(text, "a number of minutes")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number of minutes > 0, got {text}")
    return value


def out_dir(text: str) -> str:
    """An argparse type: a non-empty directory path."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must be a directory path, got an empty string")
    return text


def prepare_output_file(path: str, what: str) -> Path:
    """The output file `path`, its parent directory created and writable, checked before any work is done."""
    p = Path(path)
    if not path.strip():
        raise ValueError(f"{what}: an empty path")
    if p.is_dir():
        raise ValueError(f"{what} {path} is a directory; give a file path")
    p.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(p.parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise ValueError(f"{what} {path}: not writable")
    return p


def finite_float(text: str) -> float:
    """An argparse type: a finite number (NaN and infinities refused)."""
    value = _float(text, "a number")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def unit_float(text: str) -> float:
    """An argparse type: a finite number in [0, 1] (a share)."""
    value = finite_float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def below_one(text: str) -> float:
    """An argparse type: a finite number in [0, 1) (a dropout probability, a share of an angle: 1 would drop or
    turn everything)."""
    value = finite_float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def add_side_run_arguments(p: argparse.ArgumentParser, set_example: str) -> None:
    """--set, --max-cpu-minutes, --max-steps, --out, --restart, --no-progress: the flags of a resumable training run
    beside `train` (train-autoencoder, train-controlnet). set_example: one KEY=VALUE for --set's help."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a config value, e.g. --set {set_example} (repeatable)")
    p.add_argument("--max-cpu-minutes", type=budget, default=None,
                   help="stop (and checkpoint) after this much CPU time of the process, all threads together")
    p.add_argument("--max-steps", type=positive_int(100_000_000), default=None,
                   help="stop at this step (overrides train.max_steps)")
    p.add_argument("--out", type=out_dir, required=True, help="run directory")
    p.add_argument("--restart", action="store_true",
                   help="start over at step 0: the run's checkpoints and logs are moved aside, never deleted")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
