"""The autoencoder training loop (Esser et al. 2021, sec. 3.2; Rombach et al. 2022, sec. 3.1): reconstruction +
perceptual + (KL | commitment) losses, and a patch discriminator switched on at loss.disc_start with the adaptive
weight; Adam for both, EMA of the autoencoder, checkpoints with exact resume (the train/ package's files, lock and
run-directory rules), a CPU-time budget."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from ..data import load_dataset, save_image_tiles
from ..devices import resolve_device
from ..train.checkpoint import (CheckpointError, checkpoint_path, file_signature, first_line, optimizer_from_flat,
                                optimizer_to_flat, read_newest, save_and_prune)
from ..train.distributed import Dist
from ..train.ema import ema_decay_at, make_ema, update_ema
from ..train.run_files import RunDirectory, naming, refusal
from ..train.run_state import host_rng_state, set_host_rng_state, truncate_log
from ..train.trainer import TrainingDivergedError
from ..typed_dict import ConfigError
from .autoencoder import Autoencoder
from .codec import RUN_KIND
from .config import AutoencoderRunConfig
from .discriminator import PatchDiscriminator, discriminator_loss, generator_loss
from .losses import PerceptualLoss, adaptive_weight, reconstruction_loss
from ..train.data_order import epoch_order, next_indices

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


class AutoencoderTrainer:
    """One autoencoder run: build or resume from run_dir's newest checkpoint (holding its lock), then `run()`."""

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
        self.noise_gen = torch.Generator().manual_seed(tc.seed + 1)  # posterior samples, code restarts
        self.step, self.epoch, self.pos = 0, 0, 0
        self.order = self._epoch_order(0)
        self._verified: set[tuple] = set()
        self.files = RunDirectory(self.run_dir, Dist(device=self.device), self._say)
        self.files.lock()
        try:
            self.files.prepare(restart)
            self._resume_if_possible()
        except BaseException:
            self.files.release()
            raise

    # ---- data order: a permutation per epoch from (seed, epoch), so the position is two integers
    def _epoch_order(self, epoch: int) -> Tensor:
        return epoch_order(self.cfg.train.seed, epoch, len(self.data))

    def next_batch(self, n: int) -> Tensor:
        i, self.order, self.pos, self.epoch = next_indices(self.order, self.pos, self.epoch, n, self.cfg.train.seed)
        return self.data[i]

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

    # ---- checkpoints
    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        tensors.update({f"disc.{k}": v for k, v in self.disc.state_dict().items()})
        meta: dict[str, Any] = {"kind": RUN_KIND, "config": self.cfg.to_dict(),
                                "autoencoder_config": self.cfg.model.to_dict(), "step": self.step,
                                "epoch": self.epoch, "pos": self.pos, "rate": self.cfg.model.rate}
        for name, opt in (("ae_optim", self.opt), ("disc_optim", self.opt_disc)):
            flat, opt_meta = optimizer_to_flat(opt)
            tensors.update({name + k[len("optim"):]: v for k, v in flat.items()})
            meta[name] = opt_meta
        tensors["rng.noise"] = self.noise_gen.get_state()
        tensors["rng.torch"] = torch.get_rng_state()
        host = host_rng_state()
        meta.update(rng_python=host["python"], rng_numpy=host["numpy"])
        return tensors, meta

    def save(self) -> Path:
        tensors, meta = self.state()
        return save_and_prune(self.run_dir, self.step, tensors, meta, self.cfg.train.keep_last, self._verified)[0]

    def _resume_if_possible(self) -> None:
        found = read_newest(self.run_dir)
        if found.unreadable:
            raise CheckpointError(refusal(self.run_dir, found))
        if found.path is None:
            return
        path, tensors, meta = found.path, found.tensors, found.meta
        if meta.get("kind") != RUN_KIND:
            raise CheckpointError(f"{path} is not an autoencoder checkpoint; use another --out directory")
        now = self.cfg.to_dict()
        diffs = [f"{s}: saved {meta['config'].get(s)} vs now {now[s]}" for s in FROZEN_SECTIONS
                 if json.loads(json.dumps(now[s])) != meta["config"].get(s)]
        if diffs:
            raise CheckpointError(f"checkpoint {path} was trained with a different config; cannot resume:\n  "
                                  + "\n  ".join(diffs) + "\nUse a new --out directory or the original config.")
        try:
            for prefix, module in (("model.", self.model), ("ema.", self.ema), ("disc.", self.disc)):
                module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
            for name, opt in (("ae_optim", self.opt), ("disc_optim", self.opt_disc)):
                flat = {"optim" + k[len(name):]: v for k, v in tensors.items() if k.startswith(name + ".")}
                optimizer_from_flat(opt, flat, meta[name])
        except (KeyError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"checkpoint {path} does not fit this model: {first_line(e)}") from None
        self.noise_gen.set_state(tensors["rng.noise"])
        torch.set_rng_state(tensors["rng.torch"])
        set_host_rng_state({"python": meta["rng_python"], "numpy": meta["rng_numpy"]})
        self.step, self.epoch, self.pos = meta["step"], meta["epoch"], meta["pos"]
        self.order = self._epoch_order(self.epoch)
        self._verified.add(file_signature(path))
        self._say(f"resuming from {path} (step {self.step})")

    def _say(self, msg: str) -> None:
        if not self.quiet:
            print(f"[torchdiffusion] {msg}", flush=True)

    @torch.no_grad()
    def save_reconstructions(self, path: Path, n: int = 16) -> Path:
        """Originals (first row) over the EMA autoencoder's reconstructions (second row) of the first n items."""
        x = self.data[:n].to(self.device)
        x_hat = self.ema.decode(self.ema.encode(x)).clamp(-1, 1)
        return save_image_tiles(torch.cat([x, x_hat]).cpu(), path, nrow=n)

    # ---- the loop
    def run(self, max_steps: int | None = None, max_minutes: float | None = None,
            max_cpu_minutes: float | None = None) -> dict[str, Any]:
        """Train until max_steps (default train.max_steps), max_minutes of wall time or max_cpu_minutes of this
        process's CPU time; checkpoint at the end. The run directory's lock is released when it returns."""
        self.files.lock()
        try:
            return self._run(max_steps if max_steps is not None else self.cfg.train.max_steps,
                             max_minutes, max_cpu_minutes)
        finally:
            self.files.release()

    def _run(self, target: int, max_minutes: float | None, max_cpu_minutes: float | None) -> dict[str, Any]:
        from tqdm.auto import tqdm

        tc = self.cfg.train
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with naming(self.run_dir / "config.json"):
            (self.run_dir / "config.json").write_text(json.dumps(self.cfg.to_dict(), indent=2))
        metrics = self.run_dir / "metrics.jsonl"
        truncate_log(metrics, self.step)
        t0, c0 = time.monotonic(), time.process_time()
        bar = tqdm(total=target, initial=self.step, disable=not self.progress, desc="autoencoder", dynamic_ncols=True)
        try:
            with naming(metrics), open(metrics, "a") as log:
                while self.step < target:
                    if max_minutes and time.monotonic() - t0 >= 60 * max_minutes:
                        break
                    if max_cpu_minutes and time.process_time() - c0 >= 60 * max_cpu_minutes:
                        break
                    stats = self.train_step()
                    bar.update(1)
                    if self.step % tc.log_every == 0 or self.step == target:
                        log.write(json.dumps({"step": self.step, **stats}) + "\n")
                        log.flush()
                        bar.set_postfix(rec=f"{stats['rec']:.4f}")
                    if tc.sample_every and self.step % tc.sample_every == 0:
                        self.save_reconstructions(self.run_dir / "samples" / f"step-{self.step:08d}.png")
                    if self.step % tc.ckpt_every == 0:
                        self.save()
        finally:
            bar.close()
        final = checkpoint_path(self.run_dir, self.step)
        path = final if final.is_file() else self.save()
        return {"step": self.step, "checkpoint": str(path), "seconds": round(time.monotonic() - t0, 2),
                "cpu_seconds": round(time.process_time() - c0, 2), "rate": self.cfg.model.rate}


def train_autoencoder(cfg: AutoencoderRunConfig, run_dir: str | Path, *, max_steps: int | None = None,
                      max_minutes: float | None = None, max_cpu_minutes: float | None = None,
                      progress: bool = True, device: str | torch.device = "auto",
                      restart: bool = False) -> dict[str, Any]:
    """Train (or resume) an autoencoder run in run_dir; returns the final step, checkpoint path and seconds."""
    return AutoencoderTrainer(cfg, run_dir, progress=progress, device=device, restart=restart).run(
        max_steps=max_steps, max_minutes=max_minutes, max_cpu_minutes=max_cpu_minutes)
