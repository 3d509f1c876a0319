"""A module switched to eval mode for a block of calls (dropout off, as when sampled), then back to its own mode."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import nn


@contextmanager
def evaluating(module: nn.Module) -> Iterator[nn.Module]:
    """module.eval() inside the block; its previous mode is restored on leaving it, an exception included."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)
