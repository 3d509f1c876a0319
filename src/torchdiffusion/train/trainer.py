"""The training loop: AdamW, EMA, clipping, accumulation, checkpoints with exact resume, logs and grids."""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..build import build_model
from ..config import RunConfig
from ..data import load_dataset, save_image_grid
from ..generate import generate
from ..losses import classifier_loss, diffusion_loss, edm_loss
from ..vlb import ImportanceSampler, hybrid_loss
from .checkpoint import (CheckpointError, checkpoint_path, list_checkpoints, load_checkpoint, optimizer_from_flat,
                         optimizer_to_flat, prune_checkpoints, save_checkpoint)
from .ema import ema_decay_at, make_ema, update_ema
from .visual import save_scatter

Tensor = torch.Tensor
# config sections that must not change when a run is resumed
FROZEN_SECTIONS = ("data", "process", "model")


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite too many steps in a row."""


class Trainer:
    """Holds one run's state; `run()` trains until max_steps or the time budget, checkpointing on the way."""

    def __init__(self, cfg: RunConfig, run_dir: str | Path, *, progress: bool = True, quiet: bool = False):
        self.cfg, self.run_dir, self.progress, self.quiet = cfg, Path(run_dir), progress, quiet
        if cfg.train.num_threads:
            torch.set_num_threads(cfg.train.num_threads)
        torch.manual_seed(cfg.train.seed)
        self.data, self.labels = load_dataset(cfg.data.name, **cfg.data.options)
        if cfg.data.limit:
            self.data, self.labels = self.data[: cfg.data.limit], self.labels[: cfg.data.limit]
        self.model, self.backbone_cfg = build_model(cfg.model, cfg.process)
        self.captions = None  # CaptionContext for text-conditional models (context_dim > 0)
        if getattr(self.backbone_cfg, "context_dim", 0):
            from ..data import load_captions
            from ..text.context import CaptionContext

            self.captions = CaptionContext(load_captions(cfg.data.name, **cfg.data.options)[: len(self.data)])
        self.ema = make_ema(self.model)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        self.importance = (ImportanceSampler(cfg.process.T)
                           if cfg.loss.kind == "hybrid" and cfg.loss.importance_sampling else None)
        self.noise_gen = torch.Generator().manual_seed(cfg.train.seed + 1)
        self.bf16 = cfg.train.precision == "bf16" and bf16_supported()
        self.step, self.epoch, self.pos = 0, 0, 0
        self.order = self._epoch_order(0)
        self.resumed_from: Path | None = None
        self._resume_if_possible()

    # ---- data order: a permutation per epoch from (seed, epoch), so the position is two integers
    def _epoch_order(self, epoch: int) -> Tensor:
        g = torch.Generator().manual_seed(self.cfg.train.seed * 100_003 + epoch)
        return torch.randperm(len(self.data), generator=g)

    def next_batch(self, n: int) -> tuple[Tensor, Tensor, Tensor]:
        """The next n (items, labels, dataset indices) in data order, crossing epoch boundaries."""
        idx, got = [], 0
        while got < n:
            take = min(n - got, len(self.data) - self.pos)
            idx.append(self.order[self.pos:self.pos + take])
            self.pos, got = self.pos + take, got + take
            if self.pos == len(self.data):
                self.epoch, self.pos = self.epoch + 1, 0
                self.order = self._epoch_order(self.epoch)
        i = torch.cat(idx)
        return self.data[i], self.labels[i], i

    @property
    def num_classes(self) -> int:
        """Classes the backbone is conditioned on (0: unconditional); label == num_classes is the null label."""
        return int(getattr(self.backbone_cfg, "num_classes", 0))

    def condition(self, labels: Tensor, idx: Tensor | None = None) -> dict[str, Tensor]:
        """Backbone conditioning of a batch (labels, captions of items idx), each dropped to null with probability
        train.cond_drop, so one model is conditional and unconditional (Ho & Salimans 2022, Alg. 1)."""
        cond: dict[str, Tensor] = {}
        if self.cfg.loss.kind == "classifier":  # a classifier's labels are its targets
            return cond
        if self.num_classes:
            if labels.min() < 0 or labels.max() >= self.num_classes:
                raise ValueError(f"dataset {self.cfg.data.name!r} has labels in [{int(labels.min())}, "
                                 f"{int(labels.max())}] but model.params.num_classes is {self.num_classes}")
            drop = torch.rand(labels.shape, generator=self.noise_gen) < self.cfg.train.cond_drop
            cond["class_labels"] = torch.where(drop, torch.full_like(labels, self.num_classes), labels)
        if self.captions is not None and idx is not None:
            drop = torch.rand(idx.shape, generator=self.noise_gen) < self.cfg.train.cond_drop
            cond.update(self.captions.rows(idx, drop))
        return cond

    # ---- one optimizer step
    def loss(self, x0: Tensor, labels: Tensor, **cond: Tensor) -> Tensor:
        lc = self.cfg.loss
        if lc.kind == "classifier":
            return classifier_loss(self.model, x0, labels, generator=self.noise_gen)
        if lc.kind == "edm":
            return edm_loss(self.model, x0, generator=self.noise_gen, **cond)
        if lc.kind == "hybrid":
            return hybrid_loss(self.model, x0, lam=lc.hybrid_lambda, generator=self.noise_gen,
                               importance=self.importance, **cond)
        return diffusion_loss(self.model, x0, weighting=lc.weighting, t_sampling=lc.t_sampling, gamma=lc.gamma,
                              generator=self.noise_gen, **cond)

    def train_step(self) -> dict[str, float]:
        tc = self.cfg.train
        self.opt.zero_grad(set_to_none=True)
        micro = tc.batch_size // tc.accumulate
        total = 0.0
        for _ in range(tc.accumulate):
            x0, labels, idx = self.next_batch(micro)
            cond = self.condition(labels, idx)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                loss = self.loss(x0, labels, **cond).float().mean() / tc.accumulate
            loss.backward()
            total += float(loss.detach())
        if not math.isfinite(total):
            self.opt.zero_grad(set_to_none=True)
            return {"loss": total, "skipped": 1.0}
        gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip if tc.grad_clip > 0 else float("inf"))
        lr = tc.lr * min(1.0, (self.step + 1) / max(1, tc.warmup_steps))
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.step()
        self.step += 1
        update_ema(self.ema, self.model, ema_decay_at(self.step, tc.ema_decay))
        return {"loss": total, "grad_norm": float(gn), "lr": lr}

    # ---- checkpoints
    def state_tensors(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors = {f"model.{k}": v for k, v in self.model.backbone.state_dict().items()}
        tensors.update({f"ema.{k}": v for k, v in self.ema.backbone.state_dict().items()})
        opt_t, opt_meta = optimizer_to_flat(self.opt)
        tensors.update(opt_t)
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.noise"] = self.noise_gen.get_state()
        if self.importance is not None:
            tensors.update({f"importance.{k}": v for k, v in self.importance.state_dict().items()})
        np_state = np.random.get_state()
        meta = {"config": self.cfg.to_dict(), "backbone_config": self.backbone_cfg.to_dict(),
                "step": self.step, "epoch": self.epoch, "pos": self.pos, "optimizer": opt_meta,
                "rng_python": repr(random.getstate()),
                "rng_numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]]}
        return tensors, meta

    def save(self) -> Path:
        tensors, meta = self.state_tensors()
        path = save_checkpoint(checkpoint_path(self.run_dir, self.step), tensors, meta)
        prune_checkpoints(self.run_dir, self.cfg.train.keep_last)
        return path

    def _resume_if_possible(self) -> None:
        ckpts = list_checkpoints(self.run_dir)
        for path in reversed(ckpts):  # newest complete and valid one
            try:
                tensors, meta = load_checkpoint(path)
            except CheckpointError as e:
                self._say(f"skipping unreadable checkpoint: {e}")
                continue
            self._check_compatible(meta["config"], path)
            self.model.backbone.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            self.ema.backbone.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
            optimizer_from_flat(self.opt, tensors, meta["optimizer"])
            torch.set_rng_state(tensors["rng.torch"])
            self.noise_gen.set_state(tensors["rng.noise"])
            if self.importance is not None:
                self.importance.load_state_dict({"losses": tensors["importance.losses"],
                                                 "counts": tensors["importance.counts"]})
            random.setstate(_tuple_state(meta["rng_python"]))
            s = meta["rng_numpy"]
            np.random.set_state((s[0], np.array(s[1], dtype=np.uint32), *s[2:]))
            self.step, self.epoch, self.pos = meta["step"], meta["epoch"], meta["pos"]
            self.order = self._epoch_order(self.epoch)
            self.resumed_from = path
            self._say(f"resuming from {path} (step {self.step})")
            return

    def _check_compatible(self, saved: dict[str, Any], path: Path) -> None:
        now = self.cfg.to_dict()
        diffs = [f"{sec}: saved {saved[sec]} vs now {now[sec]}" for sec in FROZEN_SECTIONS if saved.get(sec) != now[sec]]
        if diffs:
            raise CheckpointError(f"checkpoint {path} was trained with a different config; cannot resume:\n  "
                                  + "\n  ".join(diffs) + "\nUse a new --out directory or the original config.")

    def _say(self, msg: str) -> None:
        if not self.quiet:
            print(f"[torchdiffusion] {msg}", flush=True)

    # ---- samples for people to look at
    def sample_grid(self, path: Path, num: int | None = None) -> Path:
        sc = self.cfg.sample
        n = num or (min(sc.num, 64) if self.data.ndim == 4 else sc.num)
        cond, nrow = {}, None
        if self.num_classes:  # one column per class, conditional samples (guidance scale 1)
            nrow = self.num_classes
            n = max(1, n // nrow) * nrow
            cond = {"class_labels": torch.arange(n) % nrow}
        if self.captions is not None:  # the first n items' captions, at guidance scale 1
            cond.update(self.captions.rows(torch.arange(n) % len(self.data)))
        x, _ = generate(self.ema, tuple(self.data.shape[1:]), n, sampler=sc.sampler, steps=sc.steps,
                        seed=self.cfg.train.seed, cond=cond, **({"eta": sc.eta} if sc.sampler == "ddim" else {}))
        if x.ndim == 4:
            save_image_grid(x.clamp(-1, 1), path, nrow=nrow)
        else:
            save_scatter(x, path, reference=self.data[:n * 4])
        return path

    # ---- the loop
    def run(self, max_steps: int | None = None, max_minutes: float | None = None,
            max_cpu_minutes: float | None = None) -> dict[str, Any]:
        """Train until max_steps, max_minutes of wall time or max_cpu_minutes of this process's CPU time
        (all threads; a budget that a shared, loaded machine does not shrink)."""
        from torch.utils.tensorboard import SummaryWriter
        from tqdm.auto import tqdm

        tc = self.cfg.train
        target = max_steps if max_steps is not None else tc.max_steps
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.json").write_text(json.dumps(self.cfg.to_dict(), indent=2))
        writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.step if self.step else None)
        log = open(self.run_dir / "metrics.jsonl", "a")
        t0 = time.monotonic()
        deadline = t0 + 60 * max_minutes if max_minutes else None
        cpu_deadline = time.process_time() + 60 * max_cpu_minutes if max_cpu_minutes else None
        bar = tqdm(total=target, initial=self.step, disable=not self.progress, desc="training", dynamic_ncols=True)
        seen, t_last, bad = 0, time.monotonic(), 0
        try:
            while (self.step < target and (deadline is None or time.monotonic() < deadline)
                   and (cpu_deadline is None or time.process_time() < cpu_deadline)):
                stats = self.train_step()
                if stats.get("skipped"):
                    bad += 1
                    self._say(f"non-finite loss at step {self.step + 1}; step skipped")
                    if bad >= 10:
                        raise TrainingDivergedError(f"loss non-finite for {bad} steps in a row at step "
                                                    f"{self.step + 1}; last good checkpoint kept in {self.run_dir}")
                    continue
                bad = 0
                seen += tc.batch_size
                bar.update(1)
                if self.step % tc.log_every == 0 or self.step == target:
                    now = time.monotonic()
                    stats["images_per_s"] = seen / max(now - t_last, 1e-9)
                    seen, t_last = 0, now
                    for k, v in stats.items():
                        writer.add_scalar(f"train/{k}", v, self.step)
                    log.write(json.dumps({"step": self.step, **stats}) + "\n")
                    log.flush()
                    bar.set_postfix(loss=f"{stats['loss']:.4f}")
                if tc.sample_every and self.cfg.loss.kind != "classifier" and self.step % tc.sample_every == 0:
                    self.sample_grid(self.run_dir / "samples" / f"step-{self.step:08d}.png")
                if self.step % tc.ckpt_every == 0:
                    self.save()
        finally:
            bar.close()
            writer.close()
            log.close()
        final = checkpoint_path(self.run_dir, self.step)
        path = final if final.is_file() else self.save()
        return {"step": self.step, "checkpoint": str(path), "seconds": time.monotonic() - t0}


def bf16_supported() -> bool:
    """Whether this CPU has native bfloat16 kernels (AVX512-BF16 / AMX), where autocast pays off."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _tuple_state(s: str) -> Any:
    """Parse Python's random state from its repr (ints and tuples only; no eval of code)."""
    import ast
    return ast.literal_eval(s)


def train(cfg: RunConfig, run_dir: str | Path, *, max_steps: int | None = None, max_minutes: float | None = None,
          max_cpu_minutes: float | None = None,
          progress: bool = True) -> dict[str, Any]:
    """Train (or resume) a run in run_dir; returns the final step, checkpoint path and seconds."""
    return Trainer(cfg, run_dir, progress=progress).run(max_steps=max_steps, max_minutes=max_minutes,
                                                        max_cpu_minutes=max_cpu_minutes)
