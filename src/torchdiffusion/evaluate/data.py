"""Which data an evaluation compares against, and which network turns images into features."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from ..data import TOY_PREFIX, load_dataset
from ..metrics.features import (accuracy, feature_net_path, load_feature_net, save_feature_net,
                                train_feature_net)

Tensor = torch.Tensor
TEST_SPLITS = {"fashion_mnist": {"split": "test"}}  # datasets whose loader has a separate test split
HOLDOUT_FRACTION = 0.1


@dataclass
class Reference:
    """Real data to compare samples with: x (N, ...), labels (N,), and where it came from, in words."""

    x: Tensor
    labels: Tensor
    source: str


def is_toy(dataset: str) -> bool:
    return dataset.startswith(TOY_PREFIX)


def reference_data(dataset: str, options: dict[str, Any], limit: int | None, num: int | None = None,
                   seed: int = 0) -> Reference:
    """The dataset's test split where it has one; for a toy set, a fresh draw (another seed); else the items past
    data.limit that training never saw; else (no held-out data exists) the training data itself, said so.
    `num` keeps the first num rows (toys: draws exactly num)."""
    if dataset in TEST_SPLITS:
        x, y = load_dataset(dataset, **{**options, **TEST_SPLITS[dataset]})
        source = f"{dataset} test split"
    elif is_toy(dataset):
        n = max(num or 0, int(options.get("n", 20000)) // 10)
        x, y = load_dataset(dataset, **{**options, "n": n, "seed": int(options.get("seed", 0)) + 1 + seed})
        source = f"{dataset}: a fresh draw of {n} points (seed differs from training)"
    else:
        x, y = load_dataset(dataset, **options)
        if limit and len(x) > limit:
            x, y = x[limit:], y[limit:]
            source = f"{dataset} items past data.limit={limit} (held out from training)"
        else:
            source = f"{dataset} training data (no test split and no held-out items: the model saw these)"
    if num is not None:
        x, y = x[:num], y[:num]
    return Reference(x, y, source)


def feature_training_data(dataset: str) -> tuple[Tensor, Tensor, Tensor, Tensor, str]:
    """(x_train, y_train, x_test, y_test, description) for a feature classifier: the test split where the dataset has
    one, else a fixed random 10% held out."""
    if is_toy(dataset):
        raise ValueError(f"feature networks are for image datasets; {dataset!r} is a 2-D toy set "
                         f"(its metrics, sliced Wasserstein and MMD, need no features)")
    x, y = load_dataset(dataset)
    if x.ndim != 4:
        raise ValueError(f"feature networks need images (N, C, H, W); {dataset!r} gives shape {tuple(x.shape)}")
    if dataset in TEST_SPLITS:
        xt, yt = load_dataset(dataset, **TEST_SPLITS[dataset])
        return x, y, xt, yt, f"{dataset} train split / test split"
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    n_test = max(1, int(HOLDOUT_FRACTION * len(x)))
    te, tr = perm[:n_test], perm[n_test:]
    return x[tr], y[tr], x[te], y[te], f"{dataset}: random 90% / held-out 10% (seed 0)"


def train_features(dataset: str, *, epochs: int = 2, out: str | Path | None = None,
                   seed: int = 0) -> dict[str, Any]:
    """Train the small classifier of metrics/features.py on a dataset, save it (default: the cache, where eval finds
    it) and report its test accuracy."""
    xtr, ytr, xte, yte, split = feature_training_data(dataset)
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    t0 = time.perf_counter()
    net = train_feature_net(xtr, ytr, epochs=epochs, seed=seed)
    seconds = time.perf_counter() - t0
    acc = accuracy(net, xte, yte)
    info = {"dataset": dataset, "epochs": epochs, "seed": seed, "train_size": len(xtr), "test_size": len(xte),
            "split": split, "test_accuracy": acc, "train_seconds": round(seconds, 1)}
    path = save_feature_net(net, out or feature_net_path(dataset), info)
    return {"path": str(path), **info}


class Featurizer(Protocol):
    def embed(self, x: Tensor, batch_size: int = ...) -> tuple[Tensor, Tensor]: ...


class FeatureNetFeaturizer:
    """metrics.FeatureNet as (features, logits)."""

    def __init__(self, net: Any):
        self.net = net

    @torch.no_grad()
    def embed(self, x: Tensor, batch_size: int = 500) -> tuple[Tensor, Tensor]:
        self.net.eval()
        feats = torch.cat([self.net.features(x[i:i + batch_size].float()) for i in range(0, len(x), batch_size)])
        return feats, self.net.head(feats)


def load_featurizer(spec: str | None, dataset: str, *, epochs: int = 2) -> tuple[Featurizer, dict[str, Any]]:
    """(featurizer, description) from `spec`: a pytorch-fid Inception weights file (.pth / .pt), a feature network
    file (.safetensors, e.g. from train-features --out), or a dataset name whose cached network is used (trained
    with `epochs` epochs and cached first if missing); None means the run's own dataset."""
    if spec is not None and Path(spec).suffix in (".pth", ".pt"):
        from ..metrics.inception import load_inception
        if not Path(spec).is_file():
            raise ValueError(f"--features {spec}: no such file")
        return load_inception(spec), {"kind": "inception_v3_pool3", "path": str(spec), "dim": 2048,
                                      "note": "pytorch-fid layout; parity with pytorch-fid is not verified here"}
    if spec is not None and (Path(spec).suffix == ".safetensors" or Path(spec).is_file()):
        if not Path(spec).is_file():
            raise ValueError(f"--features {spec}: no such file")
        net, info = load_feature_net(spec)
        return FeatureNetFeaturizer(net), {"kind": "feature_net", "path": str(spec), "dim": net.cfg.feature_dim,
                                           **info}
    name = spec or dataset
    path = feature_net_path(name)
    if not path.is_file():
        train_features(name, epochs=epochs)
    net, info = load_feature_net(path)
    return FeatureNetFeaturizer(net), {"kind": "feature_net", "path": str(path), "dim": net.cfg.feature_dim,
                                       "dataset": name, **info}
