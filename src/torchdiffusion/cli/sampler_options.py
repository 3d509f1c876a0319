"""Sampler options from the command line (`--option KEY=VALUE`, `--eta`) merged over the run config's."""

from __future__ import annotations

import argparse
import math
from typing import Any

import yaml

from .common import finite_float


def add_sampler_option_argument(p: argparse.ArgumentParser) -> None:
    """--option KEY=VALUE (repeatable) and its shorthand --eta."""
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a sampler option, e.g. --option eta=0.5 or --option s_churn=10 (repeatable; see "
                        "--list-samplers for each sampler's options)")
    p.add_argument("--eta", type=finite_float, default=None, help="shorthand for --option eta=ETA (DDIM, ancestral samplers)")


def parse_options(items: list[str]) -> dict[str, Any]:
    """KEY=VALUE strings -> {key: YAML value}."""
    from ..config import parse_yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--option expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = parse_yaml(raw, f"--option {key.strip()}")
        except ValueError:
            raise ValueError(f"--option {item!r}: the value is not a number, word or list") from None
    return out


def sampler_options(method: str, configured: dict[str, Any], a: argparse.Namespace) -> dict[str, Any]:
    """The run config's options for `method` overridden by the command line's, checked against its options."""
    from ..sampling import check_options

    options = {**configured, **parse_options(a.option)}
    for key, value in options.items():  # a NaN option (eta=nan) would write NaN samples
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"sampler option {key} must be a finite number, got {value}")
    if a.eta is not None:
        options["eta"] = a.eta
    check_options(method, options)
    return options
