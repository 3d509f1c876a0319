"""The autoencoder training loop (Esser et al. 2021, sec. 3.2; Rombach et al. 2022, sec. 3.1): reconstruction +
perceptual + (KL | commitment) losses, and a patch discriminator switched on at loss.disc_start with the adaptive
weight; Adam for both, EMA of the autoencoder, checkpoints with exact resume (the train/ package's files, lock and
run-directory rules: train/resume.ResumableRun), a CPU-time budget."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from ..data import load_dataset, save_image_tiles
from ..devices import resolve_device
from ..train.checkpoint import first_line
from ..train.ema import ema_decay_at, make_ema, update_ema
from ..train.resume import ResumableRun
from ..train.trainer import TrainingDivergedError
from ..typed_dict import ConfigError
from .autoencoder import Autoencoder
from .codec import RUN_KIND
from .config import AutoencoderRunConfig
from .discriminator import PatchDiscriminator, discriminator_loss, generator_loss
from .losses import PerceptualLoss, adaptive_weight, reconstruction_loss

Tensor = torch.Tensor
FROZEN_SECTIONS = ("data", "model")  # must not change when a run is resumed


def perceptual_network(spec: str) -> torch.nn.Module:
    """The frozen feature network named by loss.perceptual_features: a file, or a dataset's cached network (trained
    like `torchdiffusion train-features DATASET` when missing)."""
    from ..metrics.features import feature_net_path, load_feature_net, load_or_train_feature_net

    path = Path(spec)
    if path.suffix == ".safetensors" or path.is_file():
        if not path.is_file():
            raise ConfigError(f"loss.perceptual_features: no such file {spec}")
        try:
            return load_feature_net(path)[0]
        except (ValueError, OSError) as e:
            raise ConfigError(f"loss.perceptual_features {spec}: {first_line(e)}") from None
    if not feature_net_path(spec).is_file():
        try:
            x, y = load_dataset(spec)
        except KeyError:
            raise ConfigError(f"loss.perceptual_features: {spec!r} is neither a file nor a dataset name") from None
        return load_or_train_feature_net(spec, x, y)
    return load_feature_net(feature_net_path(spec))[0]


class AutoencoderTrainer(ResumableRun):
    """One autoencoder run: build or resume from run_dir's newest checkpoint (holding its lock), then `run()`."""

    RUN_KIND, FROZEN = RUN_KIND, FROZEN_SECTIONS  # the module's names
    WHAT, DESC = "an autoencoder", "autoencoder"

    def __init__(self, cfg: AutoencoderRunConfig, run_dir: str | Path, *, progress: bool = True,
                 device: str | torch.device = "auto", restart: bool = False, quiet: bool = False):
        self.cfg, self.run_dir, self.progress, self.quiet = cfg, Path(run_dir), progress, quiet
        self.device = resolve_device(device)
        tc, lc = cfg.train, cfg.loss
        if tc.num_threads:
            torch.set_num_threads(tc.num_threads)
        torch.manual_seed(tc.seed)
        try:
            self.data, _ = load_dataset(cfg.data.name, **cfg.data.options)
        except TypeError as e:
            raise ConfigError(f"data.options {cfg.data.options} do not fit dataset {cfg.data.name!r}: {e}") from None
        if cfg.data.limit:
            self.data = self.data[: cfg.data.limit]
        want = cfg.model.data_shape
        if self.data.ndim != 4 or tuple(self.data.shape[1:]) != want:
            raise ConfigError(f"dataset {cfg.data.name!r} has items of shape {tuple(self.data.shape[1:])} but "
                              f"model.in_channels / model.image_size describe {want}; make them match")
        self.model = Autoencoder(cfg.model).to(self.device)
        self.ema = make_ema(self.model)
        self.disc = PatchDiscriminator(cfg.model.in_channels, lc.disc_channels, lc.disc_layers).to(self.device)
        self.perceptual = (PerceptualLoss(perceptual_network(lc.perceptual_features)).to(self.device)
                           if lc.perceptual_weight > 0 else None)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=tc.lr, betas=(0.5, 0.9))
        self.opt_disc = torch.optim.Adam(self.disc.parameters(), lr=tc.disc_lr, betas=(0.5, 0.9))
        self.open_run(len(self.data), self.device, restart)  # noise_gen (posterior samples, code restarts), resume

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model, "ema": self.ema, "disc": self.disc}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"ae_optim": self.opt, "disc_optim": self.opt_disc}

    def extra_meta(self) -> dict[str, Any]:
        return {"autoencoder_config": self.cfg.model.to_dict(), "rate": self.cfg.model.rate}

    def summary(self) -> dict[str, Any]:
        return {"rate": self.cfg.model.rate}

    def after_step(self, stats: dict[str, float], bar: Any, logged: bool) -> None:
        """The loss on the progress bar, and reconstructions every train.sample_every steps."""
        if logged:
            bar.set_postfix(rec=f"{stats['rec']:.4f}")
        every = self.cfg.train.sample_every
        if every and self.step % every == 0:
            self.save_reconstructions(self.run_dir / "samples" / f"step-{self.step:08d}.png")

    def next_batch(self, n: int) -> Tensor:
        return self.data[self.next_indices(n)]

    @property
    def gan_on(self) -> bool:
        """Whether this step trains against the discriminator (after the warm-up of loss.disc_start steps)."""
        return self.cfg.loss.disc_weight > 0 and self.step >= self.cfg.loss.disc_start

    # ---- one step: the autoencoder, then the discriminator
    def train_step(self) -> dict[str, float]:
        lc, tc = self.cfg.loss, self.cfg.train
        x = self.next_batch(tc.batch_size).to(self.device)
        out = self.model(x, beta=lc.commitment, generator=self.noise_gen)
        rec = reconstruction_loss(lc.reconstruction, x, out.x_hat).mean()
        stats = {"rec": float(rec.detach())}
        if self.perceptual is not None:
            p = self.perceptual(x, out.x_hat).mean()
            stats["perceptual"] = float(p.detach())
            rec = rec + lc.perceptual_weight * p
        if self.model.quantizer is None:  # KL summed over the latent, per pixel: the LDM kl_weight's scale
            reg = lc.kl_weight * out.regularizer.mean() / x[0].numel()
            stats["kl"] = float(out.regularizer.detach().mean())
        else:
            reg = out.regularizer.mean()
            stats.update(commitment=float(reg.detach()), **out.stats)
        loss = rec + reg
        gan = self.gan_on
        if gan:
            g = generator_loss(lc.disc_loss, self.disc(out.x_hat))
            lam = (adaptive_weight(rec, g, self.model.last_layer) if lc.adaptive_weight
                   else torch.ones((), device=x.device))
            loss = loss + lc.disc_weight * lam * g
            stats.update(g_loss=float(g.detach()), adaptive_weight=float(lam))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        stats["loss"] = float(loss.detach())
        if not math.isfinite(stats["loss"]):
            raise TrainingDivergedError(f"non-finite autoencoder loss {stats['loss']} at step {self.step + 1}; "
                                        f"stopped without saving this step; lower train.lr or the loss weights")
        gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                            tc.grad_clip if tc.grad_clip > 0 else float("inf"))
        self.opt.step()
        if gan:
            d = discriminator_loss(lc.disc_loss, self.disc(x), self.disc(out.x_hat.detach()))
            self.opt_disc.zero_grad(set_to_none=True)
            d.backward()
            self.opt_disc.step()
            stats["d_loss"] = float(d.detach())
        self.step += 1
        update_ema(self.ema, self.model, ema_decay_at(self.step, tc.ema_decay))
        return {**stats, "grad_norm": float(gn), "gan": float(gan)}

    @torch.no_grad()
    def save_reconstructions(self, path: Path, n: int = 16) -> Path:
        """Originals (first row) over the EMA autoencoder's reconstructions (second row) of the first n items."""
        x = self.data[:n].to(self.device)
        x_hat = self.ema.decode(self.ema.encode(x)).clamp(-1, 1)
        return save_image_tiles(torch.cat([x, x_hat]).cpu(), path, nrow=n)


def train_autoencoder(cfg: AutoencoderRunConfig, run_dir: str | Path, *, max_steps: int | None = None,
                      max_minutes: float | None = None, max_cpu_minutes: float | None = None,
                      progress: bool = True, device: str | torch.device = "auto",
                      restart: bool = False) -> dict[str, Any]:
    """Train (or resume) an autoencoder run in run_dir; returns the final step, checkpoint path and seconds."""
    return AutoencoderTrainer(cfg, run_dir, progress=progress, device=device, restart=restart).run(
        max_steps=max_steps, max_minutes=max_minutes, max_cpu_minutes=max_cpu_minutes)
