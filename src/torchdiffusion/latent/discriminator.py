"""The patch discriminator (PatchGAN; Isola et al. 2017, sec. 3.2.2) of VQGAN (Esser et al. 2021, sec. 3.2) and
its two losses: hinge (Lim & Ye 2017) and non-saturating (Goodfellow et al. 2014, sec. 3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.unet import group_norm

Tensor = torch.Tensor
GAN_LOSSES = ("hinge", "non_saturating")


class PatchDiscriminator(nn.Module):
    """(B, C, H, W) -> (B, 1, h, w) real/fake logits, one per overlapping patch: n_layers stride-2 4x4 convs, one
    stride-1 conv, a 1-channel head (the N-layer discriminator of pix2pix), weights drawn N(0, 0.02) as in DCGAN."""

    def __init__(self, in_channels: int = 1, channels: int = 64, n_layers: int = 2):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        ch = channels
        for n in range(1, n_layers + 1):
            out = channels * min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ch, out, 4, stride, 1, bias=False), group_norm(out, 32), nn.LeakyReLU(0.2)]
            ch = out
        layers.append(nn.Conv2d(ch, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def discriminator_loss(kind: str, logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """hinge: E[relu(1 - D(x))] + E[relu(1 + D(x_hat))]; non_saturating: E[softplus(-D(x))] + E[softplus(D(x_hat))]
    (-log sigmoid(D(x)) - log(1 - sigmoid(D(x_hat)))), each half weighted 1/2 as in taming-transformers."""
    if kind == "hinge":
        return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())
    if kind == "non_saturating":
        return 0.5 * (F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean())
    raise ValueError(f"unknown GAN loss {kind!r}; choose one of {', '.join(GAN_LOSSES)}")


def generator_loss(kind: str, logits_fake: Tensor) -> Tensor:
    """hinge: -E[D(x_hat)]; non_saturating: E[softplus(-D(x_hat))] = -E[log sigmoid(D(x_hat))]."""
    if kind == "hinge":
        return -logits_fake.mean()
    if kind == "non_saturating":
        return F.softplus(-logits_fake).mean()
    raise ValueError(f"unknown GAN loss {kind!r}; choose one of {', '.join(GAN_LOSSES)}")
