"""Where a request's downloadable files go: one folder per request under the server's work folder, the oldest
removed beyond KEEP, so a long-running page does not fill the disk."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

from PIL import Image

KEEP = 64  # request folders kept


def request_dir(workdir: Path, kind: str) -> Path:
    """A new empty folder WORKDIR/<kind>-<id>; the oldest beyond KEEP are deleted."""
    workdir.mkdir(parents=True, exist_ok=True)
    old = sorted((p for p in workdir.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for p in old[:max(0, len(old) - KEEP + 1)]:
        shutil.rmtree(p, ignore_errors=True)
    d = workdir / f"{kind}-{uuid.uuid4().hex[:12]}"
    d.mkdir()
    return d


def save(d: Path, images: list[Image.Image], names: list[str], settings: dict[str, Any]) -> list[str]:
    """Write each image as NAME.png and the settings as settings.json into d; returns the paths (PNGs first)."""
    paths = []
    for img, name in zip(images, names):
        img.save(d / f"{name}.png")
        paths.append(str(d / f"{name}.png"))
    (d / "settings.json").write_text(json.dumps(settings, indent=2))
    return paths + [str(d / "settings.json")]
