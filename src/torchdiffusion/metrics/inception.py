"""InceptionV3 pool3 features (2048-d) in plain torch, laid out to load pytorch-fid's FID weights.

The network is the FID variant of InceptionV3 (Szegedy et al. 2016) that pytorch-fid ports from the TensorFlow graph
of Heusel et al. 2017: module names follow its state dict (`Conv2d_1a_3x3.conv.weight`, `Mixed_5b.branch1x1.bn.
running_mean`, ..., `fc.weight` with 1008 outputs); the pooling branches of Mixed_5*, Mixed_6b-e and Mixed_7b average
without counting padding and Mixed_7c's pools by max, as in the TF graph. No weights ship with this library: pass the
file `pt_inception-2015-12-05-6726825d.pth` yourself. The structure is tested here (key names, shapes, resizing);
agreement of the numbers with pytorch-fid's is NOT verified in this repository.
"""

from __future__ import annotations

import pickle

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

Tensor = torch.Tensor
Size = int | tuple[int, int]
INPUT_SIZE = 299
POOL3_DIM = 2048
FID_CLASSES = 1008


class BasicConv2d(nn.Module):
    """conv (no bias) -> batch norm (eps 1e-3, the TF default) -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel_size: Size, stride: int = 1, padding: Size = 0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x: Tensor) -> Tensor:  # TF's 3x3 'SAME' average ignores the padded zeros
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35x35 block: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1 -> 224 + pool_features channels."""

    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg_pool(x))], 1)


class InceptionB(nn.Module):
    """35 -> 17 reduction: 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2 -> 384 + 96 + cin channels."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (c7 inner channels) -> 4 x 192 channels."""

    def __init__(self, cin: int, c7: int):
        super().__init__()
        h, v = dict(kernel_size=(1, 7), padding=(0, 3)), dict(kernel_size=(7, 1), padding=(3, 0))
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, **h)
        self.branch7x7_3 = BasicConv2d(c7, 192, **v)
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, **v)
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, **h)
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, **v)
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, **h)
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            d = layer(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg_pool(x))], 1)


class InceptionD(nn.Module):
    """17 -> 8 reduction: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2 -> 320 + 192 + cin channels."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    """8x8 block with split 1x3 / 3x1 outputs -> 320 + 768 + 768 + 192 = 2048 channels; the pooling branch averages
    (Mixed_7b) or takes the max (Mixed_7c, a quirk of the TF FID graph)."""

    def __init__(self, cin: int, pool: str):
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        a = self.branch3x3_1(x)
        b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.pool == "max" else _avg_pool(x)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(a), self.branch3x3_2b(a),
                          self.branch3x3dbl_3a(b), self.branch3x3dbl_3b(b), self.branch_pool(pooled)], 1)


class InceptionV3(nn.Module):
    """FID InceptionV3: (B, C, H, W) images in [-1, 1] -> pool3 features (B, 2048); `logits` adds the 1008-way fc.

    Grayscale input is repeated to 3 channels and every input is resized bilinearly to 299 x 299
    (align_corners=False), as pytorch-fid's InceptionV3(resize_input=True) does; pytorch-fid maps [0, 1] to [-1, 1]
    itself, so images here are already in its network's input range.
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, 32)
        self.Mixed_5c = InceptionA(256, 64)
        self.Mixed_5d = InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128)
        self.Mixed_6c = InceptionC(768, 160)
        self.Mixed_6d = InceptionC(768, 160)
        self.Mixed_6e = InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, "avg")
        self.Mixed_7c = InceptionE(2048, "max")
        self.fc = nn.Linear(POOL3_DIM, FID_CLASSES)

    @staticmethod
    def preprocess(x: Tensor) -> Tensor:
        """(B, 1 or 3, H, W) in [-1, 1] -> (B, 3, 299, 299) in [-1, 1]."""
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected images (B, 1 or 3, H, W), got shape {tuple(x.shape)}")
        x = x.float().clamp(-1, 1)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        return x

    def pool3(self, x: Tensor) -> Tensor:
        x = self.preprocess(x)
        for layer in (self.Conv2d_1a_3x3, self.Conv2d_2a_3x3, self.Conv2d_2b_3x3):
            x = layer(x)
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean((2, 3))  # global average pool: (B, 2048)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool3(x)

    def logits(self, x: Tensor) -> Tensor:
        return self.fc(self.pool3(x))

    @torch.no_grad()
    def embed(self, x: Tensor, batch_size: int = 50) -> tuple[Tensor, Tensor]:
        """(pool3 features (N, 2048), fc logits (N, 1008)) in batches, in eval mode."""
        self.eval()
        feats = torch.cat([self.pool3(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
        return feats, self.fc(feats)


def load_inception(path: str | Path) -> InceptionV3:
    """InceptionV3 with pytorch-fid's weights file (a state dict; loaded with weights_only=True, so no code runs).
    BatchNorm's num_batches_tracked counters may be present or not; any other missing or extra key is an error."""
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        # weights_only refuses pickled code without running it; the user gets one line, not torch's traceback
        raise ValueError(f"{path}: refused to load as Inception weights: it is not a torch.save file of plain "
                         f"tensors (pickled objects could run code; nothing in it was executed)") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    with torch.device("meta"):  # no time spent initialising weights that are about to be replaced
        net = InceptionV3()
    expected = net.state_dict()
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    missing = sorted(k for k in expected if k not in state and not k.endswith("num_batches_tracked"))
    extra = sorted(k for k in state if k not in expected)
    if missing or extra:
        raise ValueError(f"{path}: not a pytorch-fid InceptionV3 state dict; missing {missing[:5]} "
                         f"({len(missing)} in all), unexpected {extra[:5]} ({len(extra)} in all)")
    state.update({k: torch.tensor(0) for k in expected if k.endswith("num_batches_tracked")})
    try:
        net.load_state_dict(state, assign=True)
    except RuntimeError as e:  # a tensor of the wrong shape
        raise ValueError(f"{path}: not a pytorch-fid InceptionV3 state dict: {e}") from None
    return net.float().eval()
