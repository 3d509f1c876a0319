"""The training loop: AdamW, EMA, clipping, accumulation, checkpoints with exact resume, logs and PNG tiles of samples.

One process or many (torchrun): every rank draws the same global micro-batch of data indices, cond dropout, t and
noise from shared generators and trains on its slice, so the gradient DDP averages is the 1-process gradient of
the same global batch, up to float summation order.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from ..build import build_model, token_model
from ..config import ConfigError, RunConfig, is_discrete
from ..model_denoiser import ModelDenoiser
from ..devices import resolve_device, uses_bf16
from ..data import IMAGE_TOKEN_SETS, load_dataset, save_image_tiles
from ..generate import generate
from ..losses import ImportanceSampler, couple, hybrid_loss, sample_t
from ..registry import LOSSES
from .checkpoint import (CheckpointError, checkpoint_path, file_signature, first_line, optimizer_to_flat,
                         read_checkpoint, save_and_prune)
from .distributed import Dist, full_tensors, split_batch, wrap_backbone
from .ema import ema_decay_at, make_ema, update_ema, update_ema_from
from .resume import config_diffs, newest_to_resume, refuse_changed, restore_optimizer, with_prefix
from .run_files import RunDirectory, naming
from .run_state import host_rng_state, set_host_rng_state, truncate_log
from .visual import save_scatter
from .data_order import epoch_order, next_indices

Tensor = torch.Tensor
# config sections that must not change when a run is resumed
FROZEN_SECTIONS = ("data", "process", "model")


MAX_BAD_STEPS = 10  # nan_policy "skip" gives up after this many non-finite steps in a row


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite (nan_policy "stop"), or too many steps in a row (nan_policy "skip")."""


class Trainer:
    """Holds one run's state; `run()` trains until max_steps or the time budget, checkpointing on the way."""

    trains_latents = False  # a subclass that encodes the data (latent.LatentTrainer) sets it

    def prepare_data(self, data: Tensor) -> Tensor:
        """The training items the model learns, from the loaded data (a subclass encodes them to latents)."""
        return data

    def decode_samples(self, x: Tensor) -> Tensor:
        """Samples as people look at them (a subclass decodes latents to images)."""
        return x

    def __init__(self, cfg: RunConfig, run_dir: str | Path, *, progress: bool = True, quiet: bool = False,
                 device: str | torch.device = "auto", restart: bool = False, init_from: str | Path | None = None):
        """Build the run and resume it from run_dir's newest checkpoint, holding the directory's lock.

        restart=True moves an existing run's files aside into run_dir/restarted-<UTC time>/ and starts at step 0;
        without it, checkpoints that cannot be read are a CheckpointError, never a silent fresh start. init_from (a
        checkpoint or run directory) gives a run that starts at step 0 that run's EMA weights, as model and EMA.
        """
        self.cfg, self.run_dir, self.progress = cfg, Path(run_dir), progress
        # the step a curriculum (iCT's levels) ends at: run(max_steps=N) sets it to N, otherwise train.max_steps;
        # a time or CPU budget cannot be turned into a step count in advance, so it leaves train.max_steps
        self.horizon = cfg.train.max_steps
        # under torchrun each rank takes its local GPU (or the CPU); a single process takes `device`
        self.dist = Dist.from_env(resolve_device(device))
        self.quiet = quiet or not self.dist.is_main  # rank 0 alone logs, writes sample tiles and checkpoints
        tc = cfg.train
        if tc.num_threads:
            torch.set_num_threads(tc.num_threads)
        # A micro-steps of `micro` items (the global micro-batch), of which each rank trains on `local`
        self.accumulate, self.local = split_batch(tc.batch_size, tc.accumulate, self.dist.world, tc.micro_batch)
        self.micro = self.local * self.dist.world
        torch.manual_seed(tc.seed)
        try:
            self.data, self.labels = load_dataset(cfg.data.name, **cfg.data.options)
        except TypeError as e:  # an option the loader does not take
            raise ConfigError(f"data.options {cfg.data.options} do not fit dataset {cfg.data.name!r}: {e}") from None
        if cfg.data.limit:
            self.data, self.labels = self.data[: cfg.data.limit], self.labels[: cfg.data.limit]
        if cfg.autoencoder and not self.trains_latents:
            raise ConfigError(f"this config names an autoencoder ({cfg.autoencoder}): a latent diffusion model trains "
                              f"with torchdiffusion.latent.LatentTrainer (`torchdiffusion train` picks it)")
        self.data = self.prepare_data(self.data)
        self.model, self.backbone_cfg = build_model(cfg.model, cfg.process)
        self.low_res_size = int(getattr(self.backbone_cfg, "low_res_size", 0))  # > 0: super-resolution (SR3)
        if self.low_res_size and (self.data.ndim != 4 or self.data.shape[-1] % self.low_res_size
                                  or self.data.shape[-2] != self.data.shape[-1]):
            raise ConfigError(f"model.params.low_res_size {self.low_res_size}: dataset {cfg.data.name!r} has items "
                              f"of shape {tuple(self.data.shape[1:])}; a super-resolution model needs square images "
                              f"whose side is a multiple of low_res_size")
        self.model.to(self.dist.device)
        self.discrete = is_discrete(cfg)
        if self.discrete:
            check_tokens(self.data, cfg, self.backbone_cfg)
        self.captions = None  # CaptionContext for text-conditional models (context_dim > 0)
        if getattr(self.backbone_cfg, "context_dim", 0):
            from ..data import load_captions
            from ..text.context import CaptionContext

            self.captions = CaptionContext(load_captions(cfg.data.name, **cfg.data.options)[: len(self.data)])
        self.ema = make_ema(self.model)
        self.importance = (ImportanceSampler(cfg.process.T)
                           if cfg.loss.kind == "hybrid" and cfg.loss.importance_sampling else None)
        if self.importance is not None and self.dist.active:
            raise ConfigError("loss.importance_sampling: true is not supported with more than one process "
                              "(each rank would learn its own sampling table); set it to false")
        self.noise_gen = torch.Generator().manual_seed(tc.seed + 1)  # shared by all ranks; drawn on the CPU
        self.bf16 = uses_bf16(tc.precision, self.dist.device)
        self.step, self.epoch, self.pos = 0, 0, 0
        self.order = self._epoch_order(0)
        self.resumed_from: Path | None = None
        self.last_checkpoint: Path | None = None  # the newest checkpoint known good: resumed from or written
        self._verified: set[tuple] = set()  # signatures of checkpoint files known readable (for pruning)
        self._unreadable_said: set[str] = set()
        self.files = RunDirectory(self.run_dir, self.dist, self._say)
        self.files.lock()
        try:
            self.files.prepare(restart)
            saved = self._resume_if_possible()  # weights before sharding; optimizer state after
            self.init_from = saved[1].get("init_from") if saved is not None else None
            if init_from is not None and saved is None:
                self._init_weights(Path(init_from))
            elif init_from is not None:
                self._say(f"resuming at step {self.step}: --init-from applies only to a run's first start")
            self.net = wrap_backbone(self.model.backbone, self.dist, tc.parallel)
            self.fsdp = self.dist.active and tc.parallel == "fsdp"
            self.train_model = self.model if self.net is self.model.backbone else token_model(
                self.net, self.model.process) if self.discrete else ModelDenoiser(
                self.net, self.model.process, self.model.prediction, sigma_data=self.model.sigma_data,
                noise_input=self.model.noise_input, learned_variance=self.model.learned_variance)
            self.opt = torch.optim.AdamW(self.train_model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
            if saved is not None:
                self._load_optimizer(*saved)
        except BaseException:
            self.close()
            raise

    # ---- data order: a permutation per epoch from (seed, epoch), so the position is two integers
    def _epoch_order(self, epoch: int) -> Tensor:
        return epoch_order(self.cfg.train.seed, epoch, len(self.data))

    def next_batch(self, n: int) -> tuple[Tensor, Tensor, Tensor]:
        """The next n (items, labels, dataset indices) in data order, crossing epoch boundaries."""
        i, self.order, self.pos, self.epoch = next_indices(self.order, self.pos, self.epoch, n, self.cfg.train.seed)
        return self.data[i], self.labels[i], i

    @property
    def num_classes(self) -> int:
        """Classes the backbone is conditioned on (0: unconditional); label == num_classes is the null label."""
        return int(getattr(self.backbone_cfg, "num_classes", 0))

    def condition(self, labels: Tensor, idx: Tensor | None = None, mine: slice = slice(None),
                  x0: Tensor | None = None) -> dict[str, Tensor]:
        """Backbone conditioning of this rank's slice of a global micro-batch (labels, captions of items idx), each
        dropped to null with probability train.cond_drop, so one model is conditional and unconditional (Ho &
        Salimans 2022, Alg. 1), and a super-resolution model's noise-augmented low-resolution x0 (never dropped).
        Dropout and augmentation are drawn for the whole micro-batch on every rank."""
        cond: dict[str, Tensor] = {}
        if self.cfg.loss.kind == "classifier":  # a classifier's labels are its targets
            return cond
        if self.low_res_size:
            from ..inverse.superres import training_condition

            if x0 is None:
                raise ValueError("a super-resolution model's condition is made from the batch: pass x0")
            cond.update(training_condition(x0, self.low_res_size, self.cfg.superres.aug_sigma_max, self.noise_gen))
        if self.num_classes:
            if labels.min() < 0 or labels.max() >= self.num_classes:
                raise ValueError(f"dataset {self.cfg.data.name!r} has labels in [{int(labels.min())}, "
                                 f"{int(labels.max())}] but model.params.num_classes is {self.num_classes}")
            drop = torch.rand(labels.shape, generator=self.noise_gen) < self.cfg.train.cond_drop
            cond["class_labels"] = torch.where(drop, torch.full_like(labels, self.num_classes), labels)
        if self.captions is not None and idx is not None:
            drop = torch.rand(idx.shape, generator=self.noise_gen) < self.cfg.train.cond_drop
            cond.update(self.captions.rows(idx, drop))
        return {k: v[mine].to(self.dist.device) for k, v in cond.items()}

    # ---- one optimizer step
    def loss(self, x0: Tensor, labels: Tensor, mine: slice = slice(None), **cond: Tensor) -> Tensor:
        """Per-sample loss of this rank's slice of the global micro-batch x0; t and noise drawn for all of x0."""
        lc, model, dev = self.cfg.loss, self.train_model, self.dist.device
        if self.importance is not None:  # L_hybrid draws t from its own table (one process only, checked in __init__)
            return hybrid_loss(model, x0[mine].to(dev), lam=lc.hybrid_lambda, generator=self.noise_gen,
                               importance=self.importance, **cond)
        objective = LOSSES.lookup(lc.kind)
        if self.discrete:  # token ids: the objective draws t and x_t for the whole micro-batch itself
            return objective(model, x0, generator=self.noise_gen, mine=mine, config=lc, **cond)
        t = sample_t(model.process, x0.shape[0], generator=self.noise_gen,
                     method=objective.t_sampling or lc.t_sampling)[mine].to(dev)
        eps = torch.randn(x0.shape, generator=self.noise_gen, dtype=x0.dtype)
        eps = couple(lc.coupling, x0, eps)[mine].to(dev)  # paired on the global micro-batch, as every rank sees it
        return objective(model, x0[mine].to(dev), t=t, eps=eps, labels=labels[mine].to(dev), config=lc,
                         progress=self.step / self.horizon, **cond)

    def train_step(self) -> dict[str, float]:
        tc = self.cfg.train
        self.opt.zero_grad(set_to_none=True)
        mine = slice(self.dist.rank * self.local, (self.dist.rank + 1) * self.local)
        total = 0.0
        for i in range(self.accumulate):
            x0, labels, idx = self.next_batch(self.micro)
            cond = self.condition(labels, idx, mine, x0)
            sync = i == self.accumulate - 1 or not hasattr(self.net, "no_sync")  # DDP: all-reduce on the last one
            with (contextlib.nullcontext() if sync else self.net.no_sync()):
                with torch.autocast(self.dist.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                    loss = self.loss(x0, labels, mine, **cond).float().mean() / self.accumulate
                loss.backward()
            total += float(loss.detach())
        total = self.dist.mean(total)  # the global batch's loss, the same on every rank
        if not math.isfinite(total):
            self.opt.zero_grad(set_to_none=True)
            return {"loss": total, "skipped": 1.0}
        gn = torch.nn.utils.clip_grad_norm_(self.train_model.parameters(),
                                            tc.grad_clip if tc.grad_clip > 0 else float("inf"))
        lr = tc.lr * min(1.0, (self.step + 1) / max(1, tc.warmup_steps))
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.step()
        self.step += 1
        decay = ema_decay_at(self.step, tc.ema_decay)
        if self.fsdp:  # every rank gathers the whole weights, so every rank's EMA is the same full copy
            update_ema_from(self.ema.backbone, full_tensors(self.net), decay)
        else:  # DDP keeps the weights identical on every rank, hence the EMA too
            update_ema(self.ema, self.model, decay)
        return {"loss": total, "grad_norm": float(gn), "lr": lr}

    # ---- checkpoints: gathered on every rank (collectives), written by rank 0
    def state_tensors(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        model_sd = full_tensors(self.net) if self.fsdp else self.model.backbone.state_dict()
        tensors = {f"model.{k}": v for k, v in model_sd.items()}
        tensors.update({f"ema.{k}": v for k, v in self.ema.backbone.state_dict().items()})
        opt_t, opt_meta = optimizer_to_flat(self.opt, self.train_model if self.fsdp else None)
        tensors.update(opt_t)
        tensors["rng.noise"] = self.noise_gen.get_state()
        if self.importance is not None:
            tensors.update({f"importance.{k}": v for k, v in self.importance.state_dict().items()})
        # per-rank host RNG states (torch, numpy, Python); rank 0's also under the 1-process names
        rngs = self.dist.gather_objects(host_rng_state())
        for r, state in enumerate(self.dist.gather(torch.get_rng_state())):
            tensors[f"rng.torch.{r}" if r else "rng.torch"] = state
        meta = {"config": self.cfg.to_dict(), "backbone_config": self.backbone_cfg.to_dict(),
                "step": self.step, "epoch": self.epoch, "pos": self.pos, "optimizer": opt_meta,
                "world_size": self.dist.world, "rng_python": rngs[0]["python"], "rng_numpy": rngs[0]["numpy"],
                "rng_ranks": rngs[1:]}
        if self.init_from is not None:
            meta["init_from"] = self.init_from
        return tensors, meta

    def save(self) -> Path:
        """Write this step's checkpoint (rank 0) and prune the old ones; every rank calls it (collectives)."""
        tensors, meta = self.state_tensors()
        path = checkpoint_path(self.run_dir, self.step)
        if self.dist.is_main:
            _, unreadable = save_and_prune(self.run_dir, self.step, tensors, meta, self.cfg.train.keep_last,
                                           self._verified)
            for e in unreadable:
                if str(e) not in self._unreadable_said:  # once per file, not at every save
                    self._unreadable_said.add(str(e))
                    self._say(f"keeping a checkpoint that cannot be read (never pruned): {first_line(e)}")
        self.dist.barrier()
        self.last_checkpoint = path
        return path

    def _resume_if_possible(self) -> tuple[dict[str, Tensor], dict[str, Any]] | None:
        """Load the newest checkpoint (all ranks read it); returns it for the optimizer.

        Checkpoints that cannot be read are refused, never skipped: starting fresh over them would truncate the
        log and prune the good files, and falling back from an unreadable newest file to an older readable one
        would silently drop the steps between them (and fork a run that a newer torchdiffusion may still read).
        Files under final names are complete (written by rename), so an unreadable one is damage or a foreign
        version that a person should look at; moving it aside, or restart=True, is one deliberate step away.
        """
        found = newest_to_resume(self.run_dir)
        if found is None:
            return None
        path, tensors, meta = found.path, found.tensors, found.meta
        self._check_compatible(meta["config"], path)
        try:
            self.model.backbone.load_state_dict(with_prefix(tensors, "model."))
            self.ema.backbone.load_state_dict(with_prefix(tensors, "ema."))
        except RuntimeError as e:
            raise CheckpointError(f"checkpoint {path} does not fit this model: {first_line(e)}") from None
        self.noise_gen.set_state(tensors["rng.noise"])
        if self.importance is not None:
            self.importance.load_state_dict({"losses": tensors["importance.losses"],
                                             "counts": tensors["importance.counts"]})
        r = self.dist.rank if meta.get("world_size", 1) == self.dist.world else 0
        torch.set_rng_state(tensors[f"rng.torch.{r}" if r else "rng.torch"])
        set_host_rng_state(meta["rng_ranks"][r - 1] if r else
                           {"python": meta["rng_python"], "numpy": meta["rng_numpy"]})
        self.step, self.epoch, self.pos = meta["step"], meta["epoch"], meta["pos"]
        self.order = self._epoch_order(self.epoch)
        self.resumed_from = self.last_checkpoint = path
        if self.dist.is_main:
            self._verified.add(file_signature(path))
        was = meta.get("world_size", 1)
        self._say(f"resuming from {path} (step {self.step})"
                  + (f"; saved by {was} processes, now {self.dist.world}" if was != self.dist.world else ""))
        return tensors, meta

    def _init_weights(self, source: Path) -> None:
        """Start from another run's EMA weights (a fine-tune, as Arriola et al. 2025 train BD3-LM: 150K steps from an
        850K-step MDLM); the optimizer, step and data order start fresh."""
        ckpt, tensors, meta = read_checkpoint(source)
        weights = with_prefix(tensors, "ema.")
        try:
            self.model.backbone.load_state_dict(weights)
        except RuntimeError as e:
            raise CheckpointError(f"--init-from {ckpt}: its weights do not fit this config's model "
                                  f"({first_line(e)}); give a run of the same backbone and size") from None
        self.ema.backbone.load_state_dict(weights)
        self.init_from = {"path": str(ckpt), "step": meta.get("step")}
        self._say(f"starting from the EMA weights of {ckpt} (step {meta.get('step')})")

    def close(self) -> None:
        """Release the run directory's lock; run() does so when it ends, and a Trainer never run should call it."""
        self.files.release()

    def _load_optimizer(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        try:
            restore_optimizer(self.opt, tensors, meta["optimizer"], sharded=self.train_model if self.fsdp else None)
        except (KeyError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"checkpoint {self.resumed_from}: optimizer state does not fit this model "
                                  f"({first_line(e)})") from None

    def _check_compatible(self, saved: dict[str, Any], path: Path) -> None:
        refuse_changed(path, config_diffs(saved, self.cfg.to_dict(), FROZEN_SECTIONS))

    def _say(self, msg: str) -> None:
        if not self.quiet:
            print(f"[torchdiffusion] {msg}", flush=True)

    # ---- samples for people to look at
    def sample_tiles(self, path: Path, num: int | None = None) -> Path:
        sc = self.cfg.sample
        if self.discrete:  # token runs: the EMA model's samples as text, one per line, or as an image grid
            from ..data import token_images
            from ..discrete.generate import generate_tokens
            from .visual import save_text

            images = self.cfg.data.name in IMAGE_TOKEN_SETS
            n, labels, nrow = (num or min(sc.num, 64)) if images else min(sc.num, 16), None, None
            if self.num_classes:  # one column per class, conditional samples (guidance scale 1)
                nrow = self.num_classes
                n = max(1, n // nrow) * nrow
                labels = torch.arange(n) % nrow
            ids, _ = generate_tokens(self.ema, n, self.data.shape[1], steps=sc.steps, seed=self.cfg.train.seed,
                                     class_labels=labels)
            if images:
                x = token_images(self.cfg.data.name, ids, self.cfg.process.vocab_size)
                return save_image_tiles(x, path, nrow=nrow) or path
            return save_text(ids, path.with_suffix(".txt"), self.cfg.data.name)
        n = num or (min(sc.num, 64) if self.data.ndim == 4 else sc.num)
        cond, nrow = {}, None
        if self.num_classes:  # one column per class, conditional samples (guidance scale 1)
            nrow = self.num_classes
            n = max(1, n // nrow) * nrow
            cond = {"class_labels": torch.arange(n) % nrow}
        if self.captions is not None:  # the first n items' captions, at guidance scale 1
            cond.update(self.captions.rows(torch.arange(n) % len(self.data)))
        if self.low_res_size:  # the first n items' low resolution, super-resolved
            from ..inverse.superres import downsample_to, upscale

            x = upscale(self.ema, downsample_to(self.data[:n].float(), self.low_res_size), sampler=sc.sampler,
                        steps=sc.steps, aug_sigma=self.cfg.superres.aug_sigma, seed=self.cfg.train.seed, **sc.options)
        else:
            x, _ = generate(self.ema, tuple(self.data.shape[1:]), n, sampler=sc.sampler, steps=sc.steps,
                            seed=self.cfg.train.seed, cond=cond, **sc.options)
        x = self.decode_samples(x)
        if x.ndim == 4:
            save_image_tiles(x.clamp(-1, 1), path, nrow=nrow)
        else:
            save_scatter(x, path, reference=self.data[:n * 4])
        return path

    # ---- the loop
    def run(self, max_steps: int | None = None, max_minutes: float | None = None,
            max_cpu_minutes: float | None = None) -> dict[str, Any]:
        """Train until max_steps, max_minutes of wall time or max_cpu_minutes of this process's CPU time
        (all threads; a budget that a shared, loaded machine does not shrink). The run directory's lock is
        held throughout (taken again if an earlier run() gave it back) and released when training ends or fails."""
        self.files.lock()
        try:
            return self._run(max_steps, max_minutes, max_cpu_minutes)
        finally:
            self.close()

    def _run(self, max_steps: int | None, max_minutes: float | None, max_cpu_minutes: float | None) -> dict[str, Any]:
        from torch.utils.tensorboard import SummaryWriter
        from tqdm.auto import tqdm

        tc, main = self.cfg.train, self.dist.is_main
        target = max_steps if max_steps is not None else tc.max_steps
        self.horizon = target  # a curriculum follows the run's step horizon (--max-steps overrides the config's)
        log = writer = None
        metrics = self.run_dir / "metrics.jsonl"
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with naming(self.run_dir / "config.json"):
                (self.run_dir / "config.json").write_text(json.dumps(self.cfg.to_dict(), indent=2))
            with naming(metrics):
                truncate_log(metrics, self.step)  # steps after the checkpoint are replayed
                log = open(metrics, "a")
            writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.step if self.step else None)
        t0 = time.monotonic()
        deadline = t0 + 60 * max_minutes if max_minutes else None
        cpu_deadline = time.process_time() + 60 * max_cpu_minutes if max_cpu_minutes else None
        bar = tqdm(total=target, initial=self.step, disable=not (self.progress and main), desc="training",
                   dynamic_ncols=True)
        seen, t_last, bad = 0, time.monotonic(), 0
        try:
            while self.step < target and not self._out_of_time(deadline, cpu_deadline):
                stats = self.train_step()
                if stats.get("skipped"):
                    bad += 1
                    self._on_non_finite(stats["loss"], bad)
                    continue
                bad = 0
                seen += tc.batch_size
                bar.update(1)
                if main and (self.step % tc.log_every == 0 or self.step == target):
                    now = time.monotonic()
                    stats["images_per_s"] = seen / max(now - t_last, 1e-9)
                    seen, t_last = 0, now
                    for k, v in stats.items():
                        writer.add_scalar(f"train/{k}", v, self.step)
                    with naming(metrics):
                        log.write(json.dumps({"step": self.step, **stats}) + "\n")
                        log.flush()
                    bar.set_postfix(loss=f"{stats['loss']:.4f}")
                if main and tc.sample_every and self.cfg.loss.kind != "classifier" and self.step % tc.sample_every == 0:
                    self.sample_tiles(self.run_dir / "samples" / f"step-{self.step:08d}.png")
                if self.step % tc.ckpt_every == 0:
                    self.save()
        finally:
            bar.close()
            if main:
                writer.close()
                with naming(metrics):
                    log.close()
        final = checkpoint_path(self.run_dir, self.step)
        path = final if final.is_file() else self.save()
        return {"step": self.step, "checkpoint": str(path), "seconds": time.monotonic() - t0}

    def _out_of_time(self, deadline: float | None, cpu_deadline: float | None) -> bool:
        """Whether a wall-time or CPU-time budget is spent; under torchrun, on any rank (all ranks stop together)."""
        if deadline is None and cpu_deadline is None:
            return False
        late = ((deadline is not None and time.monotonic() >= deadline)
                or (cpu_deadline is not None and time.process_time() >= cpu_deadline))
        return self.dist.mean(float(late)) > 0 if self.dist.active else late

    def _on_non_finite(self, loss: float, bad: int) -> None:
        """Apply train.nan_policy to a step whose loss was NaN or infinite (its update was not applied)."""
        kept = (f"the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint
                else f"no checkpoint was written to {self.run_dir}")
        where = f"loss {loss} at step {self.step + 1} (data epoch {self.epoch}, position {self.pos})"
        if self.cfg.train.nan_policy == "stop":
            raise TrainingDivergedError(f"non-finite {where}; stopped (train.nan_policy: stop) without saving; "
                                        f"{kept}. Lower train.lr or set train.grad_clip, then resume.")
        self._say(f"non-finite {where}; step skipped (train.nan_policy: skip)")
        if bad >= MAX_BAD_STEPS:
            raise TrainingDivergedError(f"non-finite loss for {bad} steps in a row, the last at step {self.step + 1}; "
                                        f"stopped without saving; {kept}.")


def check_tokens(data: Tensor, cfg: RunConfig, backbone_cfg: Any) -> None:
    """A token run's data: integer ids below process.vocab_size, sequences no longer than the backbone's seq_len."""
    K = cfg.process.vocab_size
    if data.is_floating_point() or data.ndim != 2:
        raise ConfigError(f"dataset {cfg.data.name!r} gives {data.dtype} items of shape {tuple(data.shape[1:])}; "
                          f"process.name {cfg.process.name!r} trains on token ids (N, L)")
    if int(data.min()) < 0 or int(data.max()) >= K:
        raise ConfigError(f"dataset {cfg.data.name!r} has token ids in [{int(data.min())}, {int(data.max())}] but "
                          f"process.vocab_size is {K}")
    if data.shape[1] > backbone_cfg.seq_len:
        raise ConfigError(f"dataset {cfg.data.name!r} gives sequences of {data.shape[1]} tokens, longer than "
                          f"model.params.seq_len {backbone_cfg.seq_len}")


def train(cfg: RunConfig, run_dir: str | Path, *, max_steps: int | None = None, max_minutes: float | None = None,
          max_cpu_minutes: float | None = None, progress: bool = True,
          device: str | torch.device = "auto", restart: bool = False,
          trainer_class: type[Trainer] = Trainer, init_from: str | Path | None = None) -> dict[str, Any]:
    """Train (or resume) a run in run_dir; returns the final step, checkpoint path and seconds.

    restart=True moves an existing run's files aside into run_dir/restarted-<UTC time>/ and starts from step 0.
    Under torchrun every process calls this; the process group is left when it returns. trainer_class: a Trainer
    subclass (latent.LatentTrainer for a config that names an autoencoder).
    """
    trainer = trainer_class(cfg, run_dir, progress=progress, device=device, restart=restart, init_from=init_from)
    try:
        return trainer.run(max_steps=max_steps, max_minutes=max_minutes, max_cpu_minutes=max_cpu_minutes)
    finally:
        trainer.dist.shutdown()
