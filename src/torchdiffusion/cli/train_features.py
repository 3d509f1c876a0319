"""`torchdiffusion train-features`: train and cache the feature classifier that eval's image metrics use."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:
    tf = sub.add_parser("train-features", help="train and cache the feature classifier used by eval's metrics",
                        description="Train the small classifier whose features FID/KID/PR use and whose logits IS "
                                    "uses; saved to the cache ($TORCHDIFFUSION_CACHE or ~/.cache/torchdiffusion) "
                                    "where eval finds it, or to --out. The last line is JSON with the test accuracy.")
    tf.add_argument("dataset", help="image dataset name (fashion_mnist, mnist, digits, ...)")
    tf.add_argument("--epochs", type=int, default=2)
    tf.add_argument("--seed", type=int, default=0)
    tf.add_argument("--out", default=None, metavar="FILE.safetensors", help="write here instead of the cache")
    tf.set_defaults(handler=run)


def run(a: argparse.Namespace) -> dict[str, Any]:
    from ..evaluate import train_features

    return train_features(a.dataset, epochs=a.epochs, out=a.out, seed=a.seed)
