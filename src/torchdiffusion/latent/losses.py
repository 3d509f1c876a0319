"""Autoencoder losses: reconstruction (L1 / L2), a perceptual-style feature distance on the library's own feature
network (LPIPS-like: Zhang et al. 2018, eq. 1, without learned channel weights), and the adaptive weight of the
adversarial term (Esser et al. 2021, eq. 7)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor
RECONSTRUCTIONS = ("l1", "l2")
ADAPTIVE_DELTA = 1e-6  # delta of Esser et al. 2021, eq. 7
ADAPTIVE_MAX = 1e4  # clamp, as in taming-transformers: a vanishing GAN gradient must not blow the weight up


def reconstruction_loss(kind: str, x: Tensor, x_hat: Tensor) -> Tensor:
    """Per-sample mean absolute (l1) or squared (l2) error over pixels, (B,)."""
    diff = (x_hat - x).flatten(1)
    if kind == "l1":
        return diff.abs().mean(1)
    if kind == "l2":
        return diff.pow(2).mean(1)
    raise ValueError(f"unknown reconstruction loss {kind!r}; choose one of {', '.join(RECONSTRUCTIONS)}")


def adaptive_weight(rec_loss: Tensor, gan_loss: Tensor, last_layer: Tensor, delta: float = ADAPTIVE_DELTA) -> Tensor:
    """lambda = ||grad_{G_L} L_rec|| / (||grad_{G_L} L_GAN|| + delta) at the decoder's last layer G_L (Esser et al.
    2021, eq. 7), clamped to [0, 1e4] and detached (a weight, not a path for gradients)."""
    g_rec = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    return (g_rec.norm() / (g_gan.norm() + delta)).clamp(0.0, ADAPTIVE_MAX).detach()


class PerceptualLoss(nn.Module):
    """sum over layers l of the mean squared difference of unit-normalised (over channels) activations of a frozen
    metrics.FeatureNet at each ReLU: LPIPS's distance (Zhang et al. 2018, eq. 1) with all channel weights 1."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    def taps(self, x: Tensor) -> list[Tensor]:
        """Activations after each ReLU of the feature network's convolutions, then its feature vector."""
        out, h = [], x
        for layer in self.net.convs:
            h = layer(h)
            if isinstance(layer, nn.ReLU):
                out.append(h)
        out.append(self.net.features(x)[:, :, None, None])
        return out

    def forward(self, x: Tensor, x_hat: Tensor) -> Tensor:
        """Per-sample distance (B,)."""
        total = x.new_zeros(x.shape[0])
        for a, b in zip(self.taps(x), self.taps(x_hat)):
            a, b = F.normalize(a, dim=1, eps=1e-10), F.normalize(b, dim=1, eps=1e-10)
            total = total + (a - b).pow(2).sum(1).flatten(1).mean(1)
        return total
