"""Arguments several commands share."""

from __future__ import annotations

import argparse

from ..devices import DEVICE_CHOICES


def add_device_argument(p: argparse.ArgumentParser) -> None:
    """--device auto | cpu | cuda[:N]."""
    p.add_argument("--device", default="auto", metavar="DEVICE",
                   help=f"where to run: {DEVICE_CHOICES} (auto: the CUDA GPU when there is one, else the CPU)")
