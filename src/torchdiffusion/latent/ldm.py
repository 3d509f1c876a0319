"""Latent diffusion training (Rombach et al. 2022, sec. 3.2): the ordinary Trainer on the autoencoder's latents of
the data, divided by their standard deviation measured once on the training set; the autoencoder (its config,
weights and the scale) is stored in every checkpoint, so a latent model loads and decodes on its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..config import RunConfig
from ..registry import BACKBONES
from ..train.checkpoint import CheckpointError
from ..train.trainer import Trainer, train
from ..typed_dict import ConfigError
from .codec import LatentCodec, measure_scale, read_autoencoder

Tensor = torch.Tensor


class LatentTrainer(Trainer):
    """A Trainer whose data are scaled latents; sample tiles are decoded to images."""

    trains_latents = True

    def prepare_data(self, images: Tensor) -> Tensor:
        cfg = self.cfg
        if not cfg.autoencoder:
            raise ConfigError("a latent diffusion model needs the config key autoencoder: DIR "
                              "(`--set autoencoder=DIR`, a `train-autoencoder` run)")
        ae, ckpt, meta = read_autoencoder(cfg.autoencoder)
        if images.ndim != 4 or tuple(images.shape[1:]) != ae.config.data_shape:
            raise ConfigError(f"autoencoder {cfg.autoencoder} takes images of shape {ae.config.data_shape}, but "
                              f"dataset {cfg.data.name!r} has items of shape {tuple(images.shape[1:])}")
        backbone_shape = BACKBONES.lookup(cfg.model.backbone).config_class.from_dict(cfg.model.params).data_shape
        if tuple(backbone_shape) != ae.config.latent_shape:
            c, h, _ = ae.config.latent_shape
            raise ConfigError(f"the autoencoder's latents have shape {ae.config.latent_shape} but model.params "
                              f"describe data of shape {tuple(backbone_shape)}; set model.params.in_channels={c} "
                              f"and model.params.image_size={h}")
        self.source, self.source_hash = str(Path(ckpt).resolve()), str(meta.get("content_hash"))
        self._say(f"encoding {len(images)} images with the autoencoder {ckpt} (step {meta.get('step')})")
        codec = LatentCodec(ae.to(self.dist.device), 1.0)
        self._latents = codec.encode(images)  # unscaled, kept until a resume has fixed the scale
        codec.scale = measure_scale(self._latents)
        self.codec = codec
        return self._latents / codec.scale

    def _resume_if_possible(self) -> tuple[dict[str, Tensor], dict[str, Any]] | None:
        saved = super()._resume_if_possible()
        if saved is not None:
            path, latent = self.resumed_from, saved[1].get("latent")
            if latent is None:
                raise CheckpointError(f"{path} is a pixel-space model; a latent model cannot resume it")
            if latent.get("source_hash") != self.source_hash:
                raise CheckpointError(f"{path} was trained on the latents of another autoencoder checkpoint "
                                      f"({latent.get('source')}) than {self.source}; point autoencoder at that "
                                      f"checkpoint file or use a new --out directory")
            if latent["scale"] != self.codec.scale:  # the saved scale wins, so a resume is exact
                self.codec.scale = float(latent["scale"])
                self.data = self._latents / self.codec.scale
        del self._latents
        return saved

    def state_tensors(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors, meta = super().state_tensors()
        tensors.update(self.codec.tensors())
        meta["latent"] = self.codec.meta(self.source, self.source_hash)
        return tensors, meta

    def decode_samples(self, x: Tensor) -> Tensor:
        return self.codec.decode(x)


def train_latent(cfg: RunConfig, run_dir: str | Path, **kwargs: Any) -> dict[str, Any]:
    """`torchdiffusion.train.train` with a LatentTrainer: train (or resume) a latent diffusion model."""
    return train(cfg, run_dir, trainer_class=LatentTrainer, **kwargs)
