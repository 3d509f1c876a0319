"""Resuming a run from its newest checkpoint, one path for every training loop: refuse unreadable checkpoints, check
the run's kind and its frozen config sections, restore weights, optimizers, RNG states and the data position.

The functions serve the diffusion trainer and `distill`; `ResumableRun` is the whole run skeleton (lock, data order,
checkpoints, exact resume, the budgeted loop) of the side loops that train one thing on a fixed dataset: the
autoencoder (latent/train_ae.py) and the ControlNet (controlnet/train.py)."""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .checkpoint import (CheckpointError, Newest, checkpoint_path, file_signature, first_line, optimizer_from_flat,
                         optimizer_to_flat, read_newest, save_and_prune)
from .data_order import epoch_order, next_indices
from .distributed import Dist
from .run_files import RunDirectory, naming, refusal
from .run_state import host_rng_state, set_host_rng_state, truncate_log

Tensor = torch.Tensor


def newest_to_resume(run_dir: Path, refuse: Callable[[Path, Newest], str] = refusal) -> Newest | None:
    """The run's newest checkpoint, read; None for a fresh run. Unreadable checkpoints are refused, never skipped
    (`refuse` says why and what to do; run_files.refusal by default): starting over them, or from an older one,
    would silently drop steps."""
    found = read_newest(run_dir)
    if found.unreadable:
        raise CheckpointError(refuse(Path(run_dir), found))
    return found if found.path is not None else None


def config_diffs(saved: dict[str, Any], now: dict[str, Any], sections: tuple[str, ...]) -> list[str]:
    """One line per frozen config section that differs between a checkpoint and this run (`now` compared as it
    reads back from JSON, where tuples are lists)."""
    now = json.loads(json.dumps(now))
    return [f"{s}: saved {saved.get(s)} vs now {now[s]}" for s in sections if saved.get(s) != now[s]]


def refuse_changed(path: Path, diffs: list[str], keep: str = "the original config") -> None:
    """Refuse to resume a checkpoint trained otherwise, naming each difference and the two ways on."""
    if diffs:
        raise CheckpointError(f"checkpoint {path} was trained with a different config; cannot resume:\n  "
                              + "\n  ".join(diffs) + f"\nUse a new --out directory or {keep}.")


def with_prefix(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The tensors stored under `prefix` (e.g. "model."), with the prefix taken off: a state_dict."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def optimizers_state(optimizers: dict[str, torch.optim.Optimizer]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Each optimizer's tensors under "NAME." and its metadata under meta[NAME] (NAME "optim": optimizer_to_flat's
    own names)."""
    tensors, meta = {}, {}
    for name, opt in optimizers.items():
        flat, meta[name] = optimizer_to_flat(opt)
        tensors.update({name + k[len("optim"):]: v for k, v in flat.items()})
    return tensors, meta


def restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict[str, Any],
                      name: str = "optim", sharded: nn.Module | None = None) -> None:
    """Inverse of optimizers_state for one optimizer: its "NAME." tensors and metadata `meta`."""
    flat = {"optim" + k[len(name):]: v for k, v in tensors.items() if k.startswith(name + ".")}
    optimizer_from_flat(opt, flat, meta, sharded)


def rng_state(noise_gen: torch.Generator) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """A one-process run's RNG states: its noise generator and torch's as tensors, Python's and NumPy's as metadata."""
    host = host_rng_state()
    return ({"rng.noise": noise_gen.get_state(), "rng.torch": torch.get_rng_state()},
            {"rng_python": host["python"], "rng_numpy": host["numpy"]})


def restore_rng(noise_gen: torch.Generator, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    """Inverse of rng_state."""
    noise_gen.set_state(tensors["rng.noise"])
    torch.set_rng_state(tensors["rng.torch"])
    set_host_rng_state({"python": meta["rng_python"], "numpy": meta["rng_numpy"]})


class ResumableRun(ABC):
    """A side loop's run: data in a per-epoch order, checkpoints every train.ckpt_every steps, exact resume from the
    run directory's newest checkpoint (holding its lock), and `run()` under step, wall and CPU budgets.

    A subclass sets RUN_KIND, FROZEN (config sections a resume must repeat), WHAT (the run's name in messages),
    DESC (its progress bar), FITS and KEEP (its messages), and defines `modules()` and `optimizers()` (what a checkpoint holds, by prefix),
    `train_step()`, and where it differs `extra_meta()`, `extra_diffs(meta)`, `after_step(stats, bar)` and
    `summary()`; then calls `open_run(count, device, restart)` at the end of its __init__.
    """

    RUN_KIND = ""
    FROZEN: tuple[str, ...] = ()
    WHAT = "run"
    DESC = "train"
    FITS = "model"  # what a checkpoint's weights must fit, in messages
    KEEP = "the original config"  # what else a refused resume may use, besides a new --out directory

    cfg: Any
    run_dir: Path
    quiet: bool
    progress: bool

    def open_run(self, count: int, device: torch.device, restart: bool) -> None:
        """Start at step 0 of a dataset of `count` items, then lock the run directory and resume what it holds."""
        self.count = count
        self.noise_gen = torch.Generator().manual_seed(self.cfg.train.seed + 1)
        self.step, self.epoch, self.pos = 0, 0, 0
        self.order = epoch_order(self.cfg.train.seed, 0, count)
        self._verified: set[tuple] = set()
        self.files = RunDirectory(self.run_dir, Dist(device=device), self._say)
        self.files.lock()
        try:
            self.files.prepare(restart)
            self._resume_if_possible()
        except BaseException:
            self.files.release()
            raise

    # ---- what a subclass names
    @abstractmethod
    def modules(self) -> dict[str, nn.Module]:
        """The modules a checkpoint holds, by tensor prefix (e.g. {"model": ...})."""

    @abstractmethod
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizers a checkpoint holds, by name (tensor prefix and metadata key)."""

    @abstractmethod
    def train_step(self) -> dict[str, float]:
        """One optimizer step (self.step += 1); its statistics for the metrics log."""

    def extra_meta(self) -> dict[str, Any]:
        """Metadata of this kind of run besides config, position, optimizers and RNG."""
        return {}

    def extra_diffs(self, meta: dict[str, Any]) -> list[str]:
        """Differences besides the frozen config sections that forbid a resume."""
        return []

    def after_step(self, stats: dict[str, float], bar: Any, logged: bool) -> None:
        """Called after each step, before its checkpoint (`logged`: its stats were just written)."""

    def summary(self) -> dict[str, Any]:
        """What run() returns besides step, checkpoint and seconds."""
        return {}

    # ---- data order: a permutation per epoch from (seed, epoch), so the position is two integers
    def next_indices(self, n: int) -> Tensor:
        """The dataset indices of the next n items."""
        i, self.order, self.pos, self.epoch = next_indices(self.order, self.pos, self.epoch, n, self.cfg.train.seed)
        return i

    # ---- checkpoints
    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """(tensors, metadata) of this step's checkpoint."""
        tensors = {f"{p}.{k}": v for p, m in self.modules().items() for k, v in m.state_dict().items()}
        opt_tensors, opt_meta = optimizers_state(self.optimizers())
        rng_tensors, rng_meta = rng_state(self.noise_gen)
        meta = {"kind": self.RUN_KIND, "config": self.cfg.to_dict(), **self.extra_meta(),
                "step": self.step, "epoch": self.epoch, "pos": self.pos, **opt_meta, **rng_meta}
        return {**tensors, **opt_tensors, **rng_tensors}, meta

    def save(self) -> Path:
        """Write this step's checkpoint and prune the old ones beyond train.keep_last."""
        tensors, meta = self.state()
        return save_and_prune(self.run_dir, self.step, tensors, meta, self.cfg.train.keep_last, self._verified)[0]

    def _resume_if_possible(self) -> None:
        found = newest_to_resume(self.run_dir)
        if found is None:
            return
        path, tensors, meta = found.path, found.tensors, found.meta
        if meta.get("kind") != self.RUN_KIND:
            raise CheckpointError(f"{path} is not {self.WHAT} checkpoint; use another --out directory")
        refuse_changed(path, config_diffs(meta["config"], self.cfg.to_dict(), self.FROZEN) + self.extra_diffs(meta),
                       self.KEEP)
        try:
            for prefix, module in self.modules().items():
                module.load_state_dict(with_prefix(tensors, prefix + "."))
            for name, opt in self.optimizers().items():
                restore_optimizer(opt, tensors, meta[name], name)
        except (KeyError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"checkpoint {path} does not fit this {self.FITS}: {first_line(e)}") from None
        restore_rng(self.noise_gen, tensors, meta)
        self.step, self.epoch, self.pos = meta["step"], meta["epoch"], meta["pos"]
        self.order = epoch_order(self.cfg.train.seed, self.epoch, self.count)
        self._verified.add(file_signature(path))
        self._say(f"resuming from {path} (step {self.step})")

    def _say(self, msg: str) -> None:
        if not self.quiet:
            print(f"[torchdiffusion] {msg}", flush=True)

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
        bar = tqdm(total=target, initial=self.step, disable=not self.progress, desc=self.DESC, dynamic_ncols=True)
        try:
            with naming(metrics), open(metrics, "a") as log:
                while self.step < target:
                    if max_minutes and time.monotonic() - t0 >= 60 * max_minutes:
                        break
                    if max_cpu_minutes and time.process_time() - c0 >= 60 * max_cpu_minutes:
                        break
                    stats = self.train_step()
                    bar.update(1)
                    logged = self.step % tc.log_every == 0 or self.step == target
                    if logged:
                        log.write(json.dumps({"step": self.step, **stats}) + "\n")
                        log.flush()
                    self.after_step(stats, bar, logged)
                    if self.step % tc.ckpt_every == 0:
                        self.save()
        finally:
            bar.close()
        final = checkpoint_path(self.run_dir, self.step)
        path = final if final.is_file() else self.save()
        return {"step": self.step, "checkpoint": str(path), **self.summary(),
                "seconds": round(time.monotonic() - t0, 2), "cpu_seconds": round(time.process_time() - c0, 2)}
