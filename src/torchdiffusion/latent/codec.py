"""Autoencoders as codecs: `load_autoencoder(run)` for people, and `LatentCodec`, the scaled codec a latent
diffusion model is trained through (Rombach et al. 2022, sec. 4.3.2 and appendix G: latents divided by their
measured standard deviation, so the diffusion process sees unit-variance data)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..train.checkpoint import CheckpointError, first_line, read_checkpoint
from ..typed_dict import ConfigError
from .autoencoder import Autoencoder, AutoencoderConfig

Tensor = torch.Tensor
RUN_KIND = "autoencoder"  # checkpoint metadata "kind": tells an autoencoder run from a diffusion run


def autoencoder_from_tensors(tensors: dict[str, Tensor], config: dict[str, Any], prefix: str, where: str
                             ) -> Autoencoder:
    """An Autoencoder in eval mode from a saved config dict and the tensors under `prefix`; CheckpointError if they
    do not fit (shapes checked on the meta device before anything is allocated)."""
    try:
        cfg = AutoencoderConfig.from_dict(config)
    except (ConfigError, ValueError, TypeError) as e:
        raise CheckpointError(f"{where}: its autoencoder config does not build ({first_line(e)})") from None
    weights = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    with torch.device("meta"):
        want = {k: v.shape for k, v in Autoencoder(cfg).state_dict().items()}
    wrong = sorted(set(want) ^ set(weights)) + [k for k in want if k in weights and weights[k].shape != want[k]]
    if wrong:
        raise CheckpointError(f"{where}: its autoencoder weights do not fit its config ({', '.join(wrong[:3])})")
    model = Autoencoder(cfg)
    model.load_state_dict(weights)
    return model.eval()


def read_autoencoder(path: str | Path, *, raw_weights: bool = False) -> tuple[Autoencoder, Path, dict[str, Any]]:
    """(autoencoder, the checkpoint file read, its metadata) of an autoencoder run directory or checkpoint file."""
    if not Path(path).exists():
        raise CheckpointError(f"autoencoder {path} does not exist; train one with `torchdiffusion train-autoencoder "
                              f"fashion_mnist_vae --out {path}`")
    ckpt, tensors, meta = read_checkpoint(Path(path))
    if meta.get("kind") != RUN_KIND or "autoencoder_config" not in meta:
        raise CheckpointError(f"{ckpt} is not an autoencoder checkpoint (train one with `torchdiffusion "
                              f"train-autoencoder`)")
    model = autoencoder_from_tensors(tensors, meta["autoencoder_config"], "model." if raw_weights else "ema.",
                                     str(ckpt))
    return model, ckpt, meta


def load_autoencoder(path: str | Path, *, raw_weights: bool = False, device: str | torch.device = "cpu"
                     ) -> Autoencoder:
    """The autoencoder of a run directory (its newest checkpoint) or checkpoint file, EMA weights by default, in eval
    mode: `z = ae.encode(x)` (posterior mean, or quantised latent for kind vq), `x = ae.decode(z)`, x in [-1, 1]."""
    return read_autoencoder(path, raw_weights=raw_weights)[0].to(device)


class LatentCodec(torch.nn.Module):
    """encode(x) = E(x) / scale, decode(z) = D(z * scale): the autoencoder seen through the latent scale."""

    def __init__(self, autoencoder: Autoencoder, scale: float):
        super().__init__()
        if not 0 < scale < float("inf"):
            raise ValueError(f"latent scale must be a finite number > 0, got {scale}")
        self.autoencoder, self.scale = autoencoder.eval(), float(scale)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return self.autoencoder.config.latent_shape

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self.autoencoder.config.data_shape

    @torch.no_grad()
    def encode(self, x: Tensor, batch_size: int = 256) -> Tensor:
        """Scaled latents of images x (N, C, H, W) in [-1, 1], in batches, on x's device."""
        dev = next(self.autoencoder.parameters()).device
        return torch.cat([self.autoencoder.encode(x[i:i + batch_size].to(dev)).to(x.device)
                          for i in range(0, len(x), batch_size)]) / self.scale

    @torch.no_grad()
    def decode(self, z: Tensor, batch_size: int = 256) -> Tensor:
        """Images from scaled latents z (N, *latent_shape), in batches, on z's device."""
        dev = next(self.autoencoder.parameters()).device
        return torch.cat([self.autoencoder.decode(z[i:i + batch_size].to(dev) * self.scale).to(z.device)
                          for i in range(0, len(z), batch_size)])

    def differentiable_decode(self, z: Tensor) -> Tensor:
        """decode(z) in one batch with autograd on (latent DPS differentiates through it, `inverse.DecodedOperator`);
        a VQ decoder's snap to the nearest codes passes gradients straight through (van den Oord et al. 2017)."""
        dev = next(self.autoencoder.parameters()).device
        z_s = z.to(dev) * self.scale
        q = self.autoencoder.quantizer
        if q is not None:
            z_s = z_s + (q.quantize(z_s) - z_s).detach()  # codes forward, identity backward
        return self.autoencoder.decoder(z_s).to(z.device)

    def differentiable_encode(self, x: Tensor) -> Tensor:
        """encode(x) in one batch with autograd on (the gluing term of latent DPS); VQ codes straight-through."""
        dev = next(self.autoencoder.parameters()).device
        ae = self.autoencoder
        if ae.quantizer is None:
            z = ae.encode(x.to(dev))
        else:
            h = ae.encoder(x.to(dev))
            z = h + (ae.quantizer.quantize(h) - h).detach()
        return z.to(x.device) / self.scale

    def tensors(self) -> dict[str, Tensor]:
        """The autoencoder's weights under "autoencoder.", to store inside a latent model's checkpoint."""
        return {f"autoencoder.{k}": v for k, v in self.autoencoder.state_dict().items()}

    def meta(self, source: str, source_hash: str) -> dict[str, Any]:
        """What a latent model's checkpoint records: the autoencoder's config, where it came from, the scale."""
        return {"autoencoder_config": self.autoencoder.config.to_dict(), "scale": self.scale,
                "latent_shape": list(self.latent_shape), "image_shape": list(self.image_shape),
                "source": source, "source_hash": source_hash}

    @classmethod
    def from_checkpoint(cls, tensors: dict[str, Tensor], latent_meta: dict[str, Any], where: str) -> "LatentCodec":
        """The codec a latent model's checkpoint carries (its "autoencoder." tensors and "latent" metadata)."""
        try:
            scale = float(latent_meta["scale"])
            config = latent_meta["autoencoder_config"]
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{where}: its latent metadata is incomplete ({first_line(e)})") from None
        ae = autoencoder_from_tensors(tensors, config, "autoencoder.", where)
        try:
            return cls(ae, scale)
        except ValueError as e:
            raise CheckpointError(f"{where}: {e}") from None


def measure_scale(latents: Tensor) -> float:
    """The standard deviation of all latent entries (Rombach et al. 2022, appendix G's component-wise rescaling
    with one factor: 1 / std, estimated once on the training data)."""
    return float(latents.double().std())
