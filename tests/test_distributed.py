"""torchrun with 2 CPU processes (gloo) trains the same run as 1 process with the same global batch, survives
the SIGKILL of one rank by resuming from its newest checkpoint, and can shard the backbone with FSDP."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch
import yaml

from torchdiffusion.config import load_config
from torchdiffusion.train.checkpoint import checkpoint_path, list_checkpoints, load_checkpoint
from torchdiffusion.train.trainer import Trainer

from test_train_cli import TINY

CFG = {**TINY, "train": {**TINY["train"], "ckpt_every": 2, "keep_last": 3}}
STEPS = 16  # enough that a fast machine cannot finish between the first checkpoint and the kill


def torchrun(cfg_path: Path, out: Path, steps: int, *, nproc: int = 2, tag: str = "",
             extra: tuple[str, ...] = ()) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TD_TEST_TAG": tag, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "torchdiffusion", "train", str(cfg_path), "--out", str(out), "--max-steps", str(steps),
           "--no-progress", *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def rank_pid(tag: str, rank: int) -> int | None:
    """The pid of the torchrun worker with this RANK in the process tree tagged by TD_TEST_TAG."""
    want = {f"TD_TEST_TAG={tag}".encode(), f"RANK={rank}".encode()}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                env = set((d / "environ").read_bytes().split(b"\0"))
            except OSError:
                continue
            if want <= env:
                return int(d.name)
    return None


def losses(run_dir: Path) -> list[float]:
    return [json.loads(ln)["loss"] for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def cfg_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    p.write_text(yaml.safe_dump(CFG))
    return p


@pytest.fixture(scope="module")
def one_process(cfg_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("one")
    # every checkpoint kept: the FSDP test compares against step 4
    Trainer(load_config(cfg_path, ["train.keep_last=100"]), out, progress=False, quiet=True).run(max_steps=STEPS)
    return out


def test_two_processes_match_one_and_resume_after_a_rank_is_killed(cfg_path, one_process, tmp_path):
    """Rank 1 is SIGKILLed after the first checkpoint; the rerun resumes and ends where 1 process ends."""
    out, tag = tmp_path / "two", uuid.uuid4().hex
    proc = torchrun(cfg_path, out, STEPS, tag=tag)
    deadline, pid = time.monotonic() + 120, None
    while pid is None and proc.poll() is None and time.monotonic() < deadline:  # find rank 1 first, then
        pid = rank_pid(tag, 1)  # watch for the checkpoint closely
        time.sleep(0.05)
    assert pid is not None, proc.communicate()[0]
    while not list_checkpoints(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(pid, signal.SIGKILL)
    log = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0, log  # torchrun reports the dead worker and stops the other
    killed_at = max(int(p.name[5:13]) for p in list_checkpoints(out))
    assert killed_at < STEPS, "the run finished before the kill; nothing was tested"

    proc = torchrun(cfg_path, out, STEPS, tag=tag)
    log = proc.communicate(timeout=180)[0]
    assert proc.returncode == 0, log
    assert f"resuming from {list_checkpoints(out)[0].parent}" in log
    # the global batch is the same, so the losses and weights are those of 1 process up to summation order
    assert losses(out) == pytest.approx(losses(one_process), rel=1e-5, abs=1e-6)
    w1, _ = load_checkpoint(list_checkpoints(one_process)[-1])
    w2, meta = load_checkpoint(list_checkpoints(out)[-1])
    assert meta["world_size"] == 2 and meta["step"] == STEPS and "rng.torch.1" in w2
    assert_weights_match(w1, w2, STEPS)


def assert_weights_match(w1: dict, w2: dict, steps: int) -> None:
    """Model and EMA weights of two runs agree up to summation order: Adam's m / sqrt(v) turns float-rounding
    differences of near-zero gradients (biases that a GroupNorm cancels) into steps of up to lr each, so those may
    drift by up to lr per step; every other entry must agree within lr / 100."""
    lr = CFG["train"]["lr"]
    diffs = torch.cat([(w2[k] - w1[k]).abs().flatten() for k in w1 if k.startswith(("model.", "ema."))])
    assert diffs.max() <= steps * lr
    assert (diffs > lr / 100).float().mean() < 0.01, f"{(diffs > lr / 100).sum()} of {diffs.numel()} differ"


@pytest.mark.slow
def test_fsdp_trains_with_two_processes_and_resumes(cfg_path, one_process, tmp_path):
    out = tmp_path / "fsdp"
    for steps in (3, 4):  # the second run resumes from step 3 (the whole optimizer state is sharded back)
        proc = torchrun(cfg_path, out, steps, extra=("--set", "train.parallel=fsdp"))
        log = proc.communicate(timeout=300)[0]
        assert proc.returncode == 0, log
    assert "resuming from" in log
    w1, _ = load_checkpoint(checkpoint_path(one_process, 4))
    w2, meta = load_checkpoint(checkpoint_path(out, 4))
    assert meta["step"] == 4 and meta["config"]["train"]["parallel"] == "fsdp"
    assert_weights_match(w1, w2, 4)


def test_rank_slices_of_a_micro_batch_reassemble_the_one_process_batch(tmp_path):
    """What makes 2 processes equal 1: rank r's labels after dropout, t and noise are rows [r b, (r + 1) b) of
    the ones 1 process draws for the whole micro-batch, so the per-item losses are the same items' losses."""
    c = load_config(None, [f"{k}={json.dumps(v)}" for k, v in [
        ("data", CFG["data"]), ("process", CFG["process"]), ("train", {**CFG["train"], "cond_drop": 0.5}),
        ("model", {**CFG["model"], "params": {**CFG["model"]["params"], "num_classes": 10}})]])
    t = Trainer(c, tmp_path, progress=False, quiet=True)
    x0, labels, idx = t.next_batch(8)
    state = t.noise_gen.get_state()
    whole = t.condition(labels, idx)
    assert (whole["class_labels"] == 10).any()  # some labels were dropped to null
    full = t.loss(x0, labels, **whole).detach()
    parts = []
    for rank in range(2):
        t.noise_gen.set_state(state)
        mine = slice(4 * rank, 4 * rank + 4)
        cond = t.condition(labels, idx, mine)
        assert torch.equal(cond["class_labels"], whole["class_labels"][mine])
        parts.append(t.loss(x0, labels, mine, **cond).detach())
    torch.testing.assert_close(torch.cat(parts), full, rtol=1e-6, atol=1e-7)


def test_split_batch_keeps_the_global_batch_and_derives_the_accumulation():
    from torchdiffusion.config import ConfigError
    from torchdiffusion.train.distributed import split_batch

    assert split_batch(64, 2, 1) == (2, 32) and split_batch(64, 2, 4) == (2, 8)
    # micro_batch bounds the per-rank micro-batch: the fewest accumulation steps that fit, on any world size
    assert split_batch(64, 1, 1, micro_batch=16) == (4, 16)
    assert split_batch(64, 1, 2, micro_batch=16) == (2, 16)
    assert split_batch(64, 1, 8, micro_batch=16) == (1, 8)
    assert split_batch(48, 1, 2, micro_batch=10) == (3, 8)  # 48 = 3 x 2 x 8: 12 per rank would not fit
    for args, message in [((64, 3, 2, 0), "divisible by 6"), ((64, 1, 3, 16), "multiple of 3"),
                          ((64, 2, 1, 16), "leave accumulate at 1")]:
        with pytest.raises(ConfigError, match=message):
            split_batch(*args)


def test_a_derived_accumulation_trains_exactly_like_the_configured_one(tmp_path):
    """micro_batch 4 with batch 8 on one process is accumulate 2: the same micro-batches, losses and weights."""
    runs = {}
    for name, extra in (("configured", {"accumulate": 2}), ("derived", {"accumulate": 1, "micro_batch": 4})):
        c = load_config(None, [f"{k}={json.dumps(v)}" for k, v in [
            ("data", CFG["data"]), ("process", CFG["process"]), ("model", CFG["model"]),
            ("train", {**CFG["train"], **extra})]])
        t = Trainer(c, tmp_path / name, progress=False, quiet=True)
        assert (t.accumulate, t.local) == (2, 4)
        t.run(max_steps=3)
        runs[name] = (losses(tmp_path / name), load_checkpoint(list_checkpoints(tmp_path / name)[-1])[0])
    assert runs["configured"][0] == runs["derived"][0]
    for k, v in runs["configured"][1].items():
        if k.startswith(("model.", "ema.")):
            assert torch.equal(v, runs["derived"][1][k]), k
