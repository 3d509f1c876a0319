"""SIGKILL a training process at random moments, some inside a checkpoint write, and resume each time: no checkpoint
is ever corrupt, no kill loses more than one checkpoint interval, and the end is bitwise the uninterrupted run."""

import json
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import pytest
import torch
import torch.utils.tensorboard  # noqa: F401  (imported once here, not in every forked child)

from torchdiffusion.config import RunConfig, from_dict
from torchdiffusion.train import checkpoint as ckpt_module
from torchdiffusion.train.checkpoint import list_checkpoints, load_checkpoint
from torchdiffusion.train.trainer import Trainer

from test_train_cli import TINY

EVERY = 4
CFG = {**TINY, "train": {**TINY["train"], "ckpt_every": EVERY, "keep_last": 2, "log_every": 1}}
WRITE_PAUSE = 0.3  # seconds a checkpoint sits fsynced under its temporary name, so kills can land there
STEP_PAUSE = 0.02  # seconds after each step, so a kill aimed at step k lands before the run can finish
STEP = multiprocessing.get_context("fork").Value("i", 0)  # the child's current step, read by the parent


def _train(run_dir: str, steps: int, pause: float) -> None:
    """Child process: train with checkpoint writes slowed down between fsync and rename and each step reported to
    the parent through STEP (test-side patches: kills are aimed at steps, not at times a faster machine outruns)."""
    real_fsync = os.fsync
    real_step = Trainer.train_step

    def reported_step(self: Trainer) -> dict:
        stats = real_step(self)
        STEP.value = self.step
        if pause:
            time.sleep(STEP_PAUSE)
        return stats

    def slow_fsync(fd: int) -> None:
        real_fsync(fd)
        if pause and Path(f"/proc/self/fd/{fd}").resolve().name.startswith(".ckpt-"):
            time.sleep(pause)

    ckpt_module.os.fsync = slow_fsync
    Trainer.train_step = reported_step
    code = 1
    try:
        Trainer(from_dict(RunConfig, CFG), run_dir, progress=False, quiet=True).run(max_steps=steps)
        code = 0
    finally:
        os._exit(code)


def start(run_dir: Path, steps: int, pause: float = WRITE_PAUSE) -> multiprocessing.Process:
    p = multiprocessing.get_context("fork").Process(target=_train, args=(str(run_dir), steps, pause))
    p.start()
    return p


def temporary_files(run_dir: Path, pid: int) -> list[Path]:
    """Checkpoints process pid is writing now (earlier kills leave theirs until the next save prunes them)."""
    d = run_dir / "checkpoints"
    return list(d.glob(f".ckpt-*.tmp-{pid}")) if d.is_dir() else []


def last_logged_step(run_dir: Path) -> int:
    steps = [0]
    path = run_dir / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            steps.append(json.loads(line)["step"])
        except ValueError:  # a line torn by the kill
            pass
    return max(steps)


def losses(run_dir: Path) -> list[float]:
    return [json.loads(ln)["loss"] for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]


def kill_and_resume(tmp_path: Path, kills: int, steps: int, seed: int) -> dict[str, int]:
    Trainer(from_dict(RunConfig, CFG), tmp_path / "warm", progress=False, quiet=True)  # imports, before forking
    straight = tmp_path / "straight"
    p = start(straight, steps, pause=0.0)
    p.join()
    run, rng = tmp_path / "killed", random.Random(seed)
    counts = {"kills": 0, "mid_write": 0}
    for i in range(kills):
        ckpts = list_checkpoints(run)
        resumed = int(ckpts[-1].name[5:13]) if ckpts else 0
        STEP.value = resumed
        p = start(run, steps)
        mid_write = i % 3 == 0  # every third kill waits for a checkpoint being written
        target = rng.randint(resumed + 1, steps - 1)  # the others land during or just after this step
        deadline = time.monotonic() + 120  # a safety net only: a stuck child fails the test below
        while p.is_alive() and time.monotonic() < deadline:
            if temporary_files(run, p.pid) if mid_write else STEP.value >= target:
                break
            time.sleep(0.002)
        in_write = bool(temporary_files(run, p.pid))
        if not p.is_alive():
            break  # the run finished before this kill
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        counts["kills"] += 1
        counts["mid_write"] += in_write
        ckpts = list_checkpoints(run)
        for c in ckpts:  # never a corrupt checkpoint under a final name
            load_checkpoint(c)
        newest = int(ckpts[-1].name[5:13]) if ckpts else 0
        assert last_logged_step(run) - newest <= EVERY, "a kill lost more than one checkpoint interval"
    p = start(run, steps)
    p.join()
    assert p.exitcode == 0
    assert losses(run) == losses(straight)
    a, _ = load_checkpoint(list_checkpoints(straight)[-1])
    b, meta = load_checkpoint(list_checkpoints(run)[-1])
    assert meta["step"] == steps and a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    print(f"kill test: {counts}")
    return counts


def test_three_kills_then_resume_equal_the_uninterrupted_run(tmp_path):
    counts = kill_and_resume(tmp_path, kills=3, steps=16, seed=0)
    assert counts["kills"] == 3 and counts["mid_write"] >= 1


@pytest.mark.slow
def test_twenty_kills_in_a_row_then_resume_equal_the_uninterrupted_run(tmp_path):
    counts = kill_and_resume(tmp_path, kills=20, steps=160, seed=1)
    assert counts["kills"] == 20 and counts["mid_write"] >= 7
