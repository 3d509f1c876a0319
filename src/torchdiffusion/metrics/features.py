"""A small classifier trained here as the feature network for FID-style metrics (no Inception weights ship)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

Tensor = torch.Tensor


@dataclass
class FeatureNetConfig:
    in_channels: int = 1
    num_classes: int = 10
    width: int = 32
    feature_dim: int = 128


class FeatureNet(nn.Module):
    """conv-conv-pool-conv-pool-fc classifier; `features(x)` is the penultimate layer (feature_dim)."""

    def __init__(self, cfg: FeatureNetConfig):
        super().__init__()
        w = cfg.width
        self.cfg = cfg
        self.convs = nn.Sequential(
            nn.Conv2d(cfg.in_channels, w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4))
        self.fc = nn.Linear(4 * w * 16, cfg.feature_dim)
        self.head = nn.Linear(cfg.feature_dim, cfg.num_classes)

    def features(self, x: Tensor) -> Tensor:
        """(B, C, H, W) in [-1, 1] -> (B, feature_dim)."""
        return F.relu(self.fc(self.convs(x).flatten(1)))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    @torch.no_grad()
    def embed(self, x: Tensor, batch_size: int = 500) -> Tensor:
        self.eval()
        return torch.cat([self.features(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def train_feature_net(x: Tensor, y: Tensor, *, epochs: int = 2, batch_size: int = 128, lr: float = 2e-3,
                      seed: int = 0, cfg: FeatureNetConfig | None = None) -> FeatureNet:
    """Train the classifier with Adam on labelled images (light augmentation-free recipe)."""
    cfg = cfg or FeatureNetConfig(in_channels=x.shape[1], num_classes=int(y.max()) + 1)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = FeatureNet(cfg)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    steps = epochs * (len(x) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x) - batch_size + 1, batch_size):
            idx = perm[i:i + batch_size]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


@torch.no_grad()
def accuracy(net: FeatureNet, x: Tensor, y: Tensor) -> float:
    net.eval()
    pred = torch.cat([net(x[i:i + 500]).argmax(1) for i in range(0, len(x), 500)])
    return float((pred == y).double().mean())


def cache_dir() -> Path:
    """Where trained feature networks are cached: $TORCHDIFFUSION_CACHE, else ~/.cache/torchdiffusion."""
    return Path(os.environ.get("TORCHDIFFUSION_CACHE", Path.home() / ".cache" / "torchdiffusion"))


def feature_net_path(dataset: str) -> Path:
    return cache_dir() / f"features-{dataset}.safetensors"


def save_feature_net(net: FeatureNet, path: str | Path, info: dict[str, object] | None = None) -> Path:
    """Weights in safetensors with the config (and optional JSON-able info, e.g. test accuracy) as metadata; written
    to a temporary file and renamed, so a reader never sees half a file."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    meta = {"config": json.dumps(asdict(net.cfg))}
    if info:
        meta["info"] = json.dumps(info)
    save_file(net.state_dict(), str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


def load_feature_net(path: str | Path) -> tuple[FeatureNet, dict[str, object]]:
    """(network in eval mode, its saved info ({} for files written without one))."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if "config" not in meta:
        raise ValueError(f"{path}: not a feature network file (no config in its metadata)")
    net = FeatureNet(FeatureNetConfig(**json.loads(meta["config"])))
    net.load_state_dict(load_file(str(path)))
    return net.eval(), json.loads(meta.get("info", "{}"))


def load_or_train_feature_net(dataset: str, x: Tensor, y: Tensor, **kwargs: object) -> FeatureNet:
    """The cached feature network of a dataset, trained on (x, y) the first time."""
    path = feature_net_path(dataset)
    if path.is_file():
        return load_feature_net(path)[0]
    net = train_feature_net(x, y, **kwargs)
    save_feature_net(net, path)
    return net
