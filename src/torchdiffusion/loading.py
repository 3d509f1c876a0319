"""Loading a trained run for use: a checkpoint file or a run directory -> (denoiser, run config).

A token run (config.is_discrete) loads as its token model instead: the p(x0 | x_t) denoiser of the discrete core
(`discrete.BackboneDenoiser`, with `.process`) or the autoregressive model (`discrete.AutoregressiveModel`); both
sample with `discrete.generate.generate_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .build import backbone_shapes, build_model
from .config import ConfigError, RunConfig, from_dict, is_discrete, migrate
from .model_denoiser import ModelDenoiser
from .train.checkpoint import CheckpointError, first_line, read_checkpoint

Tensor = torch.Tensor


@dataclass
class LoadedRun:
    """A model ready for sampling, the run config it was trained with, and its checkpoint's metadata."""

    model: ModelDenoiser | nn.Module  # a ModelDenoiser, or a token run's token model
    config: RunConfig
    meta: dict[str, Any]  # the checkpoint's metadata, with "path" (the file read) and "step"
    codec: Any = None  # a latent model's latent.LatentCodec (its autoencoder and latent scale); None in pixel space

    @property
    def discrete(self) -> bool:
        """Whether this is a token run (masked / D3PM diffusion or autoregressive) rather than a Denoiser."""
        return is_discrete(self.config)

    @property
    def data_shape(self) -> tuple[int, ...]:
        """Per-sample shape of the model's data (a latent model's: its latents), from its backbone config."""
        return self.model.backbone.config.data_shape

    def decode(self, x: Tensor) -> Tensor:
        """Samples as images: a latent model's latents decoded by its autoencoder; pixel-space samples unchanged."""
        return x if self.codec is None else self.codec.decode(x)


def load_run(path: str | Path, *, raw_weights: bool = False, device: str | torch.device = "cpu") -> LoadedRun:
    """The model of a checkpoint file or of a run directory's newest readable checkpoint, in eval mode on `device`,
    with the EMA weights (or the raw weights), its run config and the checkpoint's metadata."""
    ckpt, tensors, meta = read_checkpoint(Path(path))
    if meta.get("controlnet") or meta.get("kind") == "controlnet":
        raise CheckpointError(f"{ckpt} is a ControlNet run (or a distilled student of one): it samples with a "
                              f"control image, `torchdiffusion sample RUN --control IMG.png` "
                              f"(torchdiffusion.controlnet.load_controlled_run)")
    try:
        cfg = from_dict(RunConfig, migrate(meta["config"]))
    except (ConfigError, KeyError) as e:
        raise CheckpointError(f"{ckpt}: its saved config is not one this version reads ({e})") from None
    prefix = "model." if raw_weights else "ema."
    weights = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    check_shapes(ckpt, weights, cfg)  # before building: a crafted config could ask for any amount of memory
    model, _ = build_model(cfg.model, cfg.process)
    try:
        model.backbone.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(f"{ckpt}: its weights do not fit the model its config describes "
                              f"({str(e).strip().splitlines()[0]})") from None
    model.eval().to(device)
    codec = None
    if meta.get("latent") is not None:
        from .latent.codec import LatentCodec

        codec = LatentCodec.from_checkpoint(tensors, meta["latent"], str(ckpt)).to(device)
    return LoadedRun(model, cfg, {**meta, "path": str(ckpt)}, codec)


def check_shapes(ckpt: Path, weights: dict[str, Tensor], cfg: RunConfig) -> None:
    """CheckpointError unless the weights have exactly the names and shapes of the backbone cfg describes."""
    try:
        want = backbone_shapes(cfg.model)
    except (ConfigError, ValueError, TypeError) as e:
        raise CheckpointError(f"{ckpt}: its saved model config does not build ({first_line(e)})") from None
    wrong = [f"{k}: file {tuple(weights[k].shape)}, config {tuple(want[k])}"
             for k in want if k in weights and weights[k].shape != want[k]]
    wrong += [f"{k}: missing from the file" for k in want if k not in weights]
    wrong += [f"{k}: not in the model" for k in weights if k not in want]
    if wrong:
        more = f" (and {len(wrong) - 3} more)" if len(wrong) > 3 else ""
        raise CheckpointError(f"{ckpt}: its weights do not fit the model its config describes ("
                              + "; ".join(wrong[:3]) + more + "); refused before building it")


def load(path: str | Path, *, raw_weights: bool = False,
         device: str | torch.device = "cpu") -> tuple[ModelDenoiser | nn.Module, RunConfig]:
    """(denoiser, run config) of a checkpoint file or a run directory (its newest checkpoint), EMA weights by
    default, ready to sample on `device`: `x = td.sample(model, noise, method="unipc", nfe=20)`; a token run gives
    its token model: `ids, _ = generate_tokens(model, num, length)` (torchdiffusion.discrete.generate)."""
    run = load_run(path, raw_weights=raw_weights, device=device)
    return run.model, run.config
