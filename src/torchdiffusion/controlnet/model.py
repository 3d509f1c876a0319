"""ControlNet (Zhang et al. 2023, sec. 3.2, fig. 3): a trainable copy of a frozen U-Net's encoder (conv_in, the down
levels and the middle) reads the noisy input plus an encoded control image, and its features join the frozen
decoder's skip connections and the middle's output through zero-initialised 1x1 convolutions, so at initialisation the
controlled model is the base model exactly."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..model_denoiser import ModelDenoiser
from ..nn.unet import UNet, zero_

Tensor = torch.Tensor


def skip_channels(unet: UNet) -> list[int]:
    """Channels of each skip the U-Net's encoder hands its decoder, in order (conv_in first)."""
    c = unet.config
    chs, ch = [c.base_channels], c.base_channels
    for level, mult in enumerate(c.channel_mult):
        ch = mult * c.base_channels
        chs += [ch] * c.num_res_blocks
        if level < len(c.channel_mult) - 1:
            chs.append(ch)
    return chs


class ControlNet(nn.Module):
    """forward(x, noise_level, control, **cond) -> (residuals for each skip, residual for the middle's output)."""

    def __init__(self, unet: UNet, control_channels: int = 1, hint_channels: int = 16):
        super().__init__()
        c = unet.config
        self.control_channels = control_channels
        # the condition encoder E(c) (sec. 3.3): small convs to the first level's width, its last conv zeroed
        self.hint = nn.Sequential(
            nn.Conv2d(control_channels, hint_channels, 3, padding=1), nn.SiLU(),
            nn.Conv2d(hint_channels, hint_channels, 3, padding=1), nn.SiLU(),
            zero_(nn.Conv2d(hint_channels, c.base_channels, 3, padding=1)))
        # the trainable copy: the base's weights, its decoder dropped
        self.trunk = copy.deepcopy(unet)
        self.trunk.up, self.trunk.upsample = nn.ModuleList(), nn.ModuleList()
        self.trunk.norm_out, self.trunk.conv_out = nn.Identity(), nn.Identity()
        for p in self.trunk.parameters():
            p.requires_grad_(True)
        self.zero_skips = nn.ModuleList(zero_(nn.Conv2d(ch, ch, 1)) for ch in skip_channels(unet))
        mid = c.channel_mult[-1] * c.base_channels
        self.zero_mid = zero_(nn.Conv2d(mid, mid, 1))

    def forward(self, x: Tensor, noise_level: Tensor, control: Tensor, class_labels: Tensor | None = None,
                context: Tensor | None = None, context_mask: Tensor | None = None) -> tuple[list[Tensor], Tensor]:
        """x (B, C, H, W) as the base sees it, control (B, control_channels, H, W) in [-1, 1]."""
        t = self.trunk
        emb, context = t.embedding(x, noise_level, class_labels, context, context_mask)
        h, skips = t.encode(x, emb, context, context_mask, hint=self.hint(control))
        h = t.middle(h, emb, context, context_mask)
        return [z(s) for z, s in zip(self.zero_skips, skips)], self.zero_mid(h)


def batch_control(control: Tensor, batch: int) -> Tensor:
    """control (n, C, H, W) repeated to `batch` rows (guidance stacks its branches along the batch)."""
    n = control.shape[0]
    if n == batch:
        return control
    if batch % n:
        raise ValueError(f"the control image has {n} rows but the model was called on a batch of {batch}; give one "
                         "control image, or one per sample")
    return control.repeat(batch // n, *([1] * (control.ndim - 1)))


class ControlledUNet(nn.Module):
    """The frozen base U-Net with ControlNet residuals times `scale` added to its skips and middle output.

    The control image is bound (`control`, one row or one per sample) or passed per call as `control=`."""

    def __init__(self, base: UNet, controlnet: ControlNet, control: Tensor | None = None, scale: float = 1.0):
        super().__init__()
        self.base, self.controlnet, self.scale = base, controlnet, float(scale)
        self.config = base.config  # data shape, classes, context: the base's
        self.control = control
        for p in self.base.parameters():
            p.requires_grad_(False)

    def forward(self, x: Tensor, noise_level: Tensor, class_labels: Tensor | None = None,
                context: Tensor | None = None, context_mask: Tensor | None = None, *,
                control: Tensor | None = None) -> Tensor:
        """The base's output with the control's residuals (Zhang et al. 2023, eq. 2)."""
        control = self.control if control is None else control
        if control is None:
            raise ValueError("a controlled model needs a control image (control=, or sample --control IMG.png)")
        if control.shape[-2:] != x.shape[-2:] or control.shape[1] != self.controlnet.control_channels:
            raise ValueError(f"the control image has shape {tuple(control.shape[1:])} but the model needs "
                             f"({self.controlnet.control_channels}, {x.shape[-2]}, {x.shape[-1]})")
        control = batch_control(control.to(x.device, x.dtype), x.shape[0])
        b = self.base
        res_skips, res_mid = self.controlnet(x, noise_level, control, class_labels, context, context_mask)
        emb, context = b.embedding(x, noise_level, class_labels, context, context_mask)
        h, skips = b.encode(x, emb, context, context_mask)
        h = b.middle(h, emb, context, context_mask) + self.scale * res_mid
        skips = [s + self.scale * r for s, r in zip(skips, res_skips)]
        return b.decode(h, skips, emb, context, context_mask)


def controlled_denoiser(base: ModelDenoiser, controlnet: ControlNet, control: Tensor | None = None,
                        scale: float = 1.0) -> ModelDenoiser:
    """The base model steered by `controlnet` with the control image bound: again a Denoiser (same process and
    prediction), so every sampler and guidance method works on it."""
    if not isinstance(base.backbone, UNet):
        raise ValueError(f"ControlNet needs a U-Net base; this base's backbone is a {type(base.backbone).__name__}")
    return ModelDenoiser(ControlledUNet(base.backbone, controlnet, control, scale), base.process, base.prediction,
                         sigma_data=base.sigma_data, noise_input=base.parameterization.noise_input,
                         learned_variance=base.learned_variance)


def describe_controlnet(controlnet: ControlNet) -> dict[str, Any]:
    """Parameter count of the trainable part."""
    return {"parameters": sum(p.numel() for p in controlnet.parameters())}
