"""Training: the loop, EMA and checkpoints."""

from .trainer import Trainer, train

__all__ = ["Trainer", "train"]
