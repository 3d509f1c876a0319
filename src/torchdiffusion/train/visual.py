"""Pictures of 2-D samples for people to look at: a density image, no plotting library needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def save_scatter(x: torch.Tensor, path: str | Path, reference: torch.Tensor | None = None, size: int = 256,
                 lim: float = 3.5) -> Path:
    """Write a 2-D histogram of samples (white) beside the reference data (grey) as a PNG."""
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"save_scatter needs (N, >=2) points, got {tuple(x.shape)}")

    def density(p: torch.Tensor) -> np.ndarray:
        h, _, _ = np.histogram2d(p[:, 1].numpy(), p[:, 0].numpy(), bins=size, range=[[-lim, lim], [-lim, lim]])
        return (255 * np.sqrt(h / max(h.max(), 1))).astype(np.uint8)[::-1]

    panels = [density(x.detach().double().cpu())]
    if reference is not None:
        panels.insert(0, density(reference.detach().double().cpu()))
    img = np.concatenate([np.pad(p, 2, constant_values=64) for p in panels], axis=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


def save_text(ids: torch.Tensor, path: str | Path, dataset: str) -> Path:
    """Write token samples (N, L) as text, one per line (a verse break "\\n" inside a sample shown as " | ")."""
    from ..data import decode_tokens

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(decode_tokens(dataset, row).replace("\n", " | ") + "\n" for row in ids))
    return path
