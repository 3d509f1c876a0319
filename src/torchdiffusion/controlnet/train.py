"""Training a ControlNet on a frozen base run (Zhang et al. 2023, eq. 3): the base's own denoising target with the
control image derived from each training image; only the ControlNet's weights move. Checkpoints, lock and resume
are the train/ package's; the base run is named in every checkpoint and loaded from there to sample."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from ..data import load_dataset
from ..loading import LoadedRun, load_run
from ..nn.unet import UNet
from ..train.checkpoint import (CheckpointError, checkpoint_path, file_signature, first_line, optimizer_from_flat,
                                optimizer_to_flat, read_checkpoint, read_newest, save_and_prune)
from ..train.distributed import Dist
from ..train.run_files import RunDirectory, naming, refusal
from ..train.run_state import host_rng_state, set_host_rng_state, truncate_log
from ..train.trainer import TrainingDivergedError
from ..typed_dict import ConfigError
from .conditions import control_image
from .config import ControlNetRunConfig
from .model import ControlNet, controlled_denoiser
from ..train.data_order import epoch_order, next_indices

Tensor = torch.Tensor
RUN_KIND = "controlnet"
FROZEN = ("data", "control")  # must not change when a run is resumed


def load_base(base_run: str | Path, device: torch.device | str = "cpu") -> LoadedRun:
    """The frozen base: a trained pixel-space U-Net run (its EMA weights, the ones it samples with)."""
    try:
        base = load_run(base_run, device=device)
    except CheckpointError as e:
        raise CheckpointError(f"base run {base_run}: {first_line(e)}") from None
    if not isinstance(base.model.backbone, UNet):
        raise ConfigError(f"base run {base_run} has a {base.config.model.backbone} backbone; ControlNet copies a "
                          "U-Net's encoder, so the base must be a U-Net run")
    if base.codec is not None:
        raise ConfigError(f"base run {base_run} is a latent model; ControlNet here steers pixel-space U-Nets only")
    base.model.requires_grad_(False)
    return base


class ControlNetTrainer:
    """One ControlNet run: build or resume from run_dir's newest checkpoint (holding its lock), then `run()`."""

    def __init__(self, cfg: ControlNetRunConfig, base_run: str | Path, run_dir: str | Path, *,
                 progress: bool = True, quiet: bool = False, restart: bool = False):
        self.cfg, self.run_dir, self.progress, self.quiet = cfg, Path(run_dir), progress, quiet
        self.base_run = str(Path(base_run).resolve())
        tc = cfg.train
        if tc.num_threads:
            torch.set_num_threads(tc.num_threads)
        torch.manual_seed(tc.seed)
        self.base = load_base(base_run)
        unet = self.base.model.backbone
        try:
            images, _ = load_dataset(cfg.data.name, **cfg.data.options)
        except TypeError as e:
            raise ConfigError(f"data.options {cfg.data.options} do not fit dataset {cfg.data.name!r}: {e}") from None
        if cfg.data.limit:
            images = images[: cfg.data.limit]
        want = tuple(unet.config.data_shape)
        if images.ndim != 4 or tuple(images.shape[1:]) != want:
            raise ConfigError(f"dataset {cfg.data.name!r} has items of shape {tuple(images.shape[1:])} but the base "
                              f"model makes {want}; set data.options (e.g. size) to match the base")
        self.images, self.controls = images, control_image(images, cfg.control.kind)
        self.controlnet = ControlNet(unet, 1, cfg.control.hint_channels)
        self.model = controlled_denoiser(self.base.model, self.controlnet)
        self.opt = torch.optim.Adam(self.controlnet.parameters(), lr=tc.lr)
        self.noise_gen = torch.Generator().manual_seed(tc.seed + 1)
        self.step, self.epoch, self.pos = 0, 0, 0
        self.order = self._epoch_order(0)
        self._verified: set[tuple] = set()
        self.files = RunDirectory(self.run_dir, Dist(device=torch.device("cpu")), self._say)
        self.files.lock()
        try:
            self.files.prepare(restart)
            self._resume_if_possible()
        except BaseException:
            self.files.release()
            raise

    def _epoch_order(self, epoch: int) -> Tensor:
        return epoch_order(self.cfg.train.seed, epoch, len(self.images))

    def next_batch(self, n: int) -> tuple[Tensor, Tensor]:
        """(images, their control images) in a per-epoch permutation, so the position is two integers."""
        i, self.order, self.pos, self.epoch = next_indices(self.order, self.pos, self.epoch, n, self.cfg.train.seed)
        return self.images[i], self.controls[i]

    def train_step(self) -> dict[str, float]:
        """||raw(x_t, t, control) - target||^2 at t uniform on the base's time range (Zhang et al. 2023, eq. 3)."""
        tc, model = self.cfg.train, self.model
        x0, c = self.next_batch(tc.batch_size)
        p = model.process
        t = p.t_min + (p.t_max - p.t_min) * torch.rand(x0.shape[0], generator=self.noise_gen, dtype=torch.float64)
        t = model.net_time(t)
        eps = torch.randn(x0.shape, generator=self.noise_gen)
        xt = p.marginal(x0, t, eps).to(x0.dtype)
        out = model.raw(xt, t, control=c)
        if model.learned_variance:
            out = out.chunk(2, dim=1)[0]
        loss = (out - model.training_target(x0, eps, xt, t)).square().mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise TrainingDivergedError(f"non-finite ControlNet loss {value} at step {self.step + 1}; stopped without "
                                        "saving this step; lower train.lr")
        gn = torch.nn.utils.clip_grad_norm_(self.controlnet.parameters(),
                                            tc.grad_clip if tc.grad_clip > 0 else float("inf"))
        self.opt.step()
        self.step += 1
        return {"loss": value, "grad_norm": float(gn)}

    # ---- checkpoints
    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors = {f"controlnet.{k}": v for k, v in self.controlnet.state_dict().items()}
        flat, opt_meta = optimizer_to_flat(self.opt)
        tensors.update(flat)
        tensors["rng.noise"] = self.noise_gen.get_state()
        tensors["rng.torch"] = torch.get_rng_state()
        host = host_rng_state()
        meta = {"kind": RUN_KIND, "config": self.cfg.to_dict(), "base_run": self.base_run,
                "base_checkpoint": self.base.meta["path"], "base_step": self.base.meta["step"],
                "step": self.step, "epoch": self.epoch, "pos": self.pos, "optim": opt_meta,
                "rng_python": host["python"], "rng_numpy": host["numpy"]}
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
            raise CheckpointError(f"{path} is not a ControlNet checkpoint; use another --out directory")
        now = json.loads(json.dumps(self.cfg.to_dict()))
        diffs = [f"{s}: saved {meta['config'].get(s)} vs now {now[s]}" for s in FROZEN if now[s] != meta["config"].get(s)]
        if meta.get("base_checkpoint") != self.base.meta["path"]:
            diffs.append(f"base: saved {meta.get('base_checkpoint')} vs now {self.base.meta['path']}")
        if diffs:
            raise CheckpointError(f"checkpoint {path} was trained differently; cannot resume:\n  " + "\n  ".join(diffs)
                                  + "\nUse a new --out directory or the original base and config.")
        try:
            self.controlnet.load_state_dict({k[len("controlnet."):]: v for k, v in tensors.items()
                                             if k.startswith("controlnet.")})
            optimizer_from_flat(self.opt, {k: v for k, v in tensors.items() if k.startswith("optim.")}, meta["optim"])
        except (KeyError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"checkpoint {path} does not fit this ControlNet: {first_line(e)}") from None
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

    def run(self, max_steps: int | None = None, max_cpu_minutes: float | None = None) -> dict[str, Any]:
        """Train until max_steps (default train.max_steps) or max_cpu_minutes of this process's CPU time; checkpoint
        at the end. The run directory's lock is released when it returns."""
        from tqdm.auto import tqdm

        target = max_steps if max_steps is not None else self.cfg.train.max_steps
        self.files.lock()
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with naming(self.run_dir / "config.json"):
                (self.run_dir / "config.json").write_text(json.dumps(self.cfg.to_dict(), indent=2))
            metrics = self.run_dir / "metrics.jsonl"
            truncate_log(metrics, self.step)
            t0, c0 = time.monotonic(), time.process_time()
            bar = tqdm(total=target, initial=self.step, disable=not self.progress, desc="controlnet")
            try:
                with naming(metrics), open(metrics, "a") as log:
                    while self.step < target:
                        if max_cpu_minutes and time.process_time() - c0 >= 60 * max_cpu_minutes:
                            break
                        stats = self.train_step()
                        bar.update(1)
                        if self.step % self.cfg.train.log_every == 0 or self.step == target:
                            log.write(json.dumps({"step": self.step, **stats}) + "\n")
                            log.flush()
                        if self.step % self.cfg.train.ckpt_every == 0:
                            self.save()
            finally:
                bar.close()
            final = checkpoint_path(self.run_dir, self.step)
            path = final if final.is_file() else self.save()
            return {"step": self.step, "checkpoint": str(path), "base_run": self.base_run,
                    "seconds": round(time.monotonic() - t0, 2), "cpu_seconds": round(time.process_time() - c0, 2)}
        finally:
            self.files.release()


def train_controlnet(cfg: ControlNetRunConfig, base_run: str | Path, run_dir: str | Path, *,
                     max_steps: int | None = None, max_cpu_minutes: float | None = None, progress: bool = True,
                     restart: bool = False) -> dict[str, Any]:
    """Train (or resume) a ControlNet on the frozen base run; returns the final step, checkpoint path and seconds."""
    return ControlNetTrainer(cfg, base_run, run_dir, progress=progress, restart=restart).run(
        max_steps=max_steps, max_cpu_minutes=max_cpu_minutes)


def load_controlled_run(path: str | Path, control: Tensor | None = None, scale: float = 1.0,
                        device: str | torch.device = "cpu") -> LoadedRun:
    """A ControlNet run (or checkpoint) with its base, as a LoadedRun whose model is the controlled Denoiser."""
    ckpt, tensors, meta = read_checkpoint(Path(path))
    if meta.get("kind") != RUN_KIND:
        raise CheckpointError(f"{ckpt} is not a ControlNet checkpoint (train one with `torchdiffusion "
                              "train-controlnet BASE_RUN CONFIG --out DIR`)")
    base = load_base(meta["base_run"], device)
    hint = int(meta["config"]["control"]["hint_channels"])
    controlnet = ControlNet(base.model.backbone, 1, hint)
    try:
        controlnet.load_state_dict({k[len("controlnet."):]: v for k, v in tensors.items()
                                    if k.startswith("controlnet.")})
    except RuntimeError as e:
        raise CheckpointError(f"{ckpt}: its ControlNet does not fit the base {meta['base_run']} "
                              f"({first_line(e)})") from None
    model = controlled_denoiser(base.model, controlnet.to(device), control, scale).eval()
    return LoadedRun(model, base.config, {**meta, "path": str(ckpt)}, None)
