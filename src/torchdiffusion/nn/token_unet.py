"""The image U-Net over token ids: a grey-level image of K ordinal classes in, K logits per pixel out (D3PM images).

Austin et al. 2021 (sec. 5, appendix B.2) run the DDPM U-Net on x_t scaled to [-1, 1] and read p(x0 | x_t) from its
outputs. Here the sequence x (B, H * W) of class ids in raster order is turned into one channel 2 x / (K - 1) - 1
(the ordinal value, so neighbouring classes look alike, which the discretised-Gaussian kernel relies on), run
through `UNet`, and the K output channels become logits (B, H * W, K): the discrete denoiser contract over the
flattened image, so the trainer, the bounds and the samplers of `discrete/` take it like a sequence backbone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .unet import UNet, UNetConfig

Tensor = torch.Tensor


@dataclass
class TokenUNetConfig(UNetConfig):
    """`UNetConfig` of a one-channel image of `vocab_size` grey levels; the output is `vocab_size` logits per pixel."""

    vocab_size: int = 8  # K ordinal classes (grey levels) a pixel takes

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_at_least(2, "vocab_size")
        for name, ok in (("in_channels", self.in_channels == 1), ("out_channels", self.out_channels is None),
                         ("learned_variance", not self.learned_variance), ("low_res_size", not self.low_res_size),
                         ("context_dim", not self.context_dim)):
            if not ok:
                raise ValueError(f"TokenUNetConfig.{name}: a token U-Net reads one grey channel and outputs "
                                 f"vocab_size logits per pixel, so {name} keeps its default, got "
                                 f"{getattr(self, name)!r}")

    @property
    def total_out_channels(self) -> int:
        """K logits per pixel."""
        return int(self.vocab_size)

    @property
    def seq_len(self) -> int:
        """L = image_size^2 pixels in raster order."""
        return int(self.image_size) ** 2

    @property
    def data_shape(self) -> tuple[int, ...]:
        """(L,): a sample is a sequence of image_size^2 class ids."""
        return (self.seq_len,)


class TokenUNet(UNet):
    """forward(x (B, H * W) long ids in [0, K), noise_level (B,), class_labels (B,) or None) -> logits (B, H * W, K)."""

    config_class = TokenUNetConfig

    def forward(self, x: Tensor, noise_level: Tensor, class_labels: Tensor | None = None) -> Tensor:  # type: ignore[override]
        c = self.config
        if x.ndim != 2 or x.is_floating_point() or x.shape[1] != c.seq_len:
            raise ValueError(f"TokenUNet takes integer ids (B, {c.seq_len}) (a {c.image_size} x {c.image_size} image "
                             f"in raster order), got {x.dtype} {tuple(x.shape)}")
        if x.numel() and (bool((x < 0).any()) or bool((x >= c.vocab_size).any())):
            raise ValueError(f"TokenUNet: ids must be in [0, {c.vocab_size}), got values in "
                             f"[{int(x.min())}, {int(x.max())}]")
        B, S = x.shape[0], c.image_size
        grey = (2.0 * x.float() / (c.vocab_size - 1) - 1.0).view(B, 1, S, S)  # ordinal value in [-1, 1]
        out = super().forward(grey, noise_level, class_labels)  # (B, K, S, S)
        return out.flatten(2).transpose(1, 2)  # (B, S * S, K)
