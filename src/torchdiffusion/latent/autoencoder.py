"""The two autoencoders of latent diffusion (Rombach et al. 2022, sec. 3.1): KL-regularised (a diagonal Gaussian
posterior pulled gently towards N(0, I)) and VQ-regularised (an EMA codebook). Both are codecs on images in [-1, 1]:

- `encode(x)` returns the latent a diffusion model is trained on: the posterior MEAN for the KL autoencoder (no
  sampling, so the same image always has the same latent), the QUANTISED latent (nearest codes) for the VQ one;
- `decode(z)` maps a latent back to an image; the VQ decoder first snaps z to its nearest codes (Rombach et al.
  2022, sec. 3.1: the quantisation layer is absorbed into the decoder), so a sampled latent decodes like a code map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..nn.config import BackboneConfig
from .modules import Decoder, Encoder, level_sizes
from .quantize import VectorQuantizerEMA

Tensor = torch.Tensor
KINDS = ("kl", "vq")


@dataclass
class AutoencoderConfig(BackboneConfig):
    """Configuration of `Autoencoder`; saved beside the weights."""

    kind: str = "kl"  # kl: Gaussian posterior with a KL term | vq: EMA codebook
    in_channels: int = 1
    image_size: int = 28
    base_channels: int = 32  # width of the first level
    channel_mult: tuple[int, ...] = (1, 2, 2)  # width multiplier per level; len - 1 halvings (28 -> 14 -> 7)
    num_res_blocks: int = 1
    z_channels: int = 4  # latent channels (the code dimension D of the VQ autoencoder)
    groups: int = 32  # GroupNorm groups, reduced to a divisor of each width
    num_codes: int = 256  # VQ: codebook size K
    codebook_decay: float = 0.99  # VQ: EMA decay gamma of the codebook
    restart_below: float = 0.0  # VQ: restart codes whose EMA count fell below this (0: never)

    def __post_init__(self) -> None:
        self.channel_mult = tuple(int(m) for m in self.channel_mult)
        if self.kind not in KINDS:
            raise ValueError(f"AutoencoderConfig.kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not self.channel_mult or min(self.channel_mult) < 1:
            raise ValueError(f"AutoencoderConfig.channel_mult must be non-empty positive ints, got {self.channel_mult}")
        self.check_at_least(1, "in_channels", "image_size", "base_channels", "num_res_blocks", "z_channels",
                            "groups", "num_codes")
        if not 0.0 <= self.codebook_decay < 1.0:
            raise ValueError(f"AutoencoderConfig.codebook_decay must be in [0, 1), got {self.codebook_decay}")
        if not 0.0 <= self.restart_below < float("inf"):
            raise ValueError(f"AutoencoderConfig.restart_below must be a finite number >= 0, got {self.restart_below}")

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(z_channels, h, w) of one image's latent."""
        s = level_sizes(self.image_size, len(self.channel_mult))[-1]
        return (self.z_channels, s, s)

    @property
    def rate(self) -> dict[str, float]:
        """Latent size: numbers per image, and for the VQ autoencoder the bits per image (log2 K per position)."""
        c, h, w = self.latent_shape
        out = {"latent_numbers": c * h * w, "pixel_numbers": self.in_channels * self.image_size ** 2}
        out["compression"] = out["pixel_numbers"] / out["latent_numbers"]
        if self.kind == "vq":
            out["bits_per_image"] = h * w * math.log2(self.num_codes)
        return out


class DiagonalGaussian:
    """q(z | x) = N(mean, diag(exp(logvar))) over (B, C, H, W) (Kingma & Welling 2014, sec. 2.4)."""

    def __init__(self, moments: Tensor):
        self.mean, logvar = moments.chunk(2, dim=1)
        self.logvar = logvar.clamp(-30.0, 20.0)  # exp stays finite in float32
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """z = mean + std * eps (the reparameterisation trick); eps drawn on the CPU from generator."""
        eps = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype).to(self.mean.device)
        return self.mean + self.std * eps

    def kl(self) -> Tensor:
        """KL(q || N(0, I)) = 1/2 sum (mean^2 + var - 1 - logvar) over the latent (Kingma & Welling 2014, app. B), (B,)."""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar).flatten(1).sum(1)


@dataclass
class AutoencoderOutput:
    """One training forward: the reconstruction, the latent it was decoded from, and the regulariser per sample
    (KL for kind kl, beta-weighted commitment for kind vq), with VQ code-usage statistics."""

    x_hat: Tensor
    z: Tensor
    regularizer: Tensor  # (B,)
    stats: dict[str, float]


class Autoencoder(nn.Module):
    """Encoder -> (Gaussian posterior | EMA vector quantiser) -> decoder, on images in [-1, 1]."""

    config_class = AutoencoderConfig

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        self.config = cfg
        moments = 2 * cfg.z_channels if cfg.kind == "kl" else cfg.z_channels
        self.encoder = Encoder(cfg.in_channels, cfg.base_channels, cfg.channel_mult, cfg.num_res_blocks, moments,
                               cfg.groups)
        self.decoder = Decoder(cfg.z_channels, cfg.base_channels, cfg.channel_mult, cfg.num_res_blocks,
                               cfg.in_channels, cfg.groups, cfg.image_size)
        self.quantizer = (VectorQuantizerEMA(cfg.num_codes, cfg.z_channels, cfg.codebook_decay, cfg.restart_below)
                          if cfg.kind == "vq" else None)

    @property
    def last_layer(self) -> Tensor:
        """The decoder's last weight G_L (Esser et al. 2021, eq. 7)."""
        return self.decoder.conv_out.weight

    def check_input(self, x: Tensor) -> None:
        """A ValueError unless x is (B, in_channels, image_size, image_size)."""
        c, s = self.config.in_channels, self.config.image_size
        if x.ndim != 4 or tuple(x.shape[1:]) != (c, s, s):
            raise ValueError(f"the autoencoder takes images (B, {c}, {s}, {s}), got shape {tuple(x.shape)}")

    def posterior(self, x: Tensor) -> DiagonalGaussian:
        """q(z | x) of the KL autoencoder."""
        if self.quantizer is not None:
            raise ValueError("a VQ autoencoder has no Gaussian posterior; use encode(x) for its quantised latent")
        return DiagonalGaussian(self.encoder(x))

    def encode(self, x: Tensor) -> Tensor:
        """The latent of images x (B, C, H, W) in [-1, 1]: the posterior mean (kl) or the nearest codes (vq)."""
        self.check_input(x)
        if self.quantizer is None:
            return self.posterior(x).mean
        return self.quantizer.quantize(self.encoder(x))

    def decode(self, z: Tensor) -> Tensor:
        """Images (B, C, H, W) from latents (B, z_channels, h, w); vq snaps z to its nearest codes first."""
        if z.ndim != 4 or tuple(z.shape[1:]) != self.config.latent_shape:
            raise ValueError(f"the decoder takes latents (B, {', '.join(map(str, self.config.latent_shape))}), "
                             f"got shape {tuple(z.shape)}")
        if self.quantizer is not None:
            z = self.quantizer.quantize(z)
        return self.decoder(z)

    def forward(self, x: Tensor, *, beta: float = 0.25, generator: torch.Generator | None = None
                ) -> AutoencoderOutput:
        """Training forward: kl decodes a posterior sample; vq decodes the straight-through quantised latent (and,
        in training mode, moves the codebook)."""
        self.check_input(x)
        if self.quantizer is None:
            q = self.posterior(x)
            z = q.sample(generator)
            return AutoencoderOutput(self.decoder(z), z, q.kl(), {})
        out = self.quantizer(self.encoder(x), beta=beta, generator=generator)
        return AutoencoderOutput(self.decoder(out.z_q), out.z_q, out.commitment,
                                 {"perplexity": out.perplexity, "code_usage": out.usage})
