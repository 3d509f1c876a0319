"""A run is never lost: unreadable checkpoints stop a resume instead of being trained over, pruning keeps what it
cannot read, one trainer holds a run directory at a time, the metadata is hashed, a crafted config is refused
before it is built, a full disk leaves no partial file, and an empty dataset is refused at once."""

import errno
import hashlib
import json
import multiprocessing
import os
import resource
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from torchdiffusion.config import RunConfig, from_dict
from torchdiffusion.loading import load_run
from torchdiffusion.train import checkpoint as ckpt_module
from torchdiffusion.train import trainer as trainer_module
from torchdiffusion.train.checkpoint import (CheckpointError, checkpoint_path, list_checkpoints, load_checkpoint,
                                             prune_checkpoints, save_checkpoint)
from torchdiffusion.train.lock import RunLock, RunLockedError
from torchdiffusion.train.trainer import Trainer, train

from test_train_cli import TINY


def config(**train: object) -> RunConfig:
    """The tiny digits run (8x8, T = 50) with train overrides."""
    return from_dict(RunConfig, {**TINY, "train": {**TINY["train"], **train}})


def trained(run: Path, steps: int = 3, **overrides: object) -> Path:
    Trainer(config(**overrides), run, progress=False, quiet=True).run(max_steps=steps)
    return run


def corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))


def snapshot(run: Path) -> dict[str, bytes]:
    """Every file of a run by relative path (the lock file aside): what 'nothing was touched' compares."""
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and p.name != ".lock"}


# ---- 1. a resume never starts fresh over checkpoints it cannot read

def test_a_stray_unreadable_newer_checkpoint_stops_the_run_and_every_good_checkpoint_survives(tmp_path):
    run = trained(tmp_path / "run", 3, ckpt_every=1, keep_last=1)
    stray = checkpoint_path(run, 99)
    stray.write_bytes(b"not a checkpoint at all")
    before = snapshot(run)
    with pytest.raises(CheckpointError, match=r"(?s)cannot be read.*ckpt-00000099.*truncated or not a safetensors"):
        train(config(ckpt_every=1, keep_last=1), run, max_steps=6, progress=False)
    assert snapshot(run) == before  # the good ckpt-3, the stray file and metrics.jsonl as they were
    assert [p.name for p in list_checkpoints(run)] == ["ckpt-00000003.safetensors", "ckpt-00000099.safetensors"]


def test_a_run_whose_checkpoints_are_all_unreadable_is_refused_and_left_as_it_was(tmp_path):
    run = trained(tmp_path / "run", 6)
    for c in list_checkpoints(run):
        corrupt(c)
    before = snapshot(run)
    with pytest.raises(CheckpointError, match="none can be read") as info:
        Trainer(config(), run, progress=False, quiet=True)
    msg = str(info.value)
    assert "ckpt-00000003" in msg and "ckpt-00000006" in msg and "hash mismatch" in msg and "restart" in msg
    assert snapshot(run) == before  # metrics.jsonl untouched, nothing deleted


def test_a_checkpoint_of_a_newer_format_is_refused_not_trained_over(tmp_path):
    run = trained(tmp_path / "run", 3)
    c = list_checkpoints(run)[-1]
    tensors, meta = load_checkpoint(c)
    save_file(tensors, str(c), metadata={"torchdiffusion": json.dumps({**meta, "format_version": 3})})
    with pytest.raises(CheckpointError, match=r"(?s)none can be read.*format 3 is not supported"):
        Trainer(config(), run, progress=False, quiet=True)


def test_restart_moves_the_old_run_aside_and_starts_at_step_zero(tmp_path):
    run = trained(tmp_path / "run", 3)
    for c in list_checkpoints(run):
        corrupt(c)
    before = snapshot(run)
    t = Trainer(config(), run, progress=False, quiet=True, restart=True)
    assert t.step == 0 and t.resumed_from is None
    t.run(max_steps=2)
    (aside,) = run.glob("restarted-*")
    assert {f"{aside.name}/{name}": data for name, data in before.items()} == \
        {k: v for k, v in snapshot(run).items() if k.startswith(aside.name)}  # every old file, byte for byte
    assert [p.name for p in list_checkpoints(run)] == ["ckpt-00000002.safetensors"]
    assert [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]


# ---- 2. pruning keeps what it cannot read and never looks above the current step

def test_pruning_keeps_unreadable_files_and_files_above_the_current_step(tmp_path):
    run = tmp_path / "run"
    for step in (2, 4, 5, 6, 9):
        save_checkpoint(checkpoint_path(run, step), {"w": torch.full((2,), float(step))}, {"step": step})
    corrupt(checkpoint_path(run, 5))
    kept_unreadable = prune_checkpoints(run, keep_last=1, step=6)
    assert [p.name[5:13] for p in list_checkpoints(run)] == ["00000005", "00000006", "00000009"]
    assert len(kept_unreadable) == 1 and "ckpt-00000005" in str(kept_unreadable[0])


def test_training_on_never_prunes_an_older_unreadable_checkpoint(tmp_path, capsys):
    run = trained(tmp_path / "run", 3, keep_last=1)
    stray = checkpoint_path(run, 1)
    stray.write_bytes(b"garbage")
    Trainer(config(keep_last=1), run, progress=False, quiet=False).run(max_steps=9)
    assert [p.name for p in list_checkpoints(run)] == ["ckpt-00000001.safetensors", "ckpt-00000009.safetensors"]
    out = capsys.readouterr().out
    assert out.count("keeping a checkpoint that cannot be read") == 1 and "ckpt-00000001" in out


# ---- 3. sampling falls back to the newest readable checkpoint, saying which newer ones it skipped

def test_load_run_falls_back_to_the_newest_readable_checkpoint_and_says_so(tmp_path, capsys):
    run = trained(tmp_path / "run", 6)
    corrupt(checkpoint_path(run, 6))
    loaded = load_run(run)
    assert loaded.meta["step"] == 3
    err = capsys.readouterr().err
    assert "skipped 1 newer unreadable checkpoint" in err and "ckpt-00000006" in err and "hash mismatch" in err
    corrupt(checkpoint_path(run, 3))
    with pytest.raises(CheckpointError, match=r"(?s)none can be read.*ckpt-00000006.*ckpt-00000003"):
        load_run(run)


# ---- 4. one trainer per run directory

def _hold_lock(run: str, conn) -> None:
    """Child process: take the run's lock, report, and wait to be killed."""
    lock = RunLock(run)  # kept referenced: a RunLock collected gives its lock back
    lock.acquire()
    conn.send("locked")
    time.sleep(60)
    os._exit(0)


def test_a_second_trainer_on_a_run_directory_is_refused_naming_the_first(tmp_path):
    run = tmp_path / "run"
    first = Trainer(config(), run, progress=False, quiet=True)
    with pytest.raises(RunLockedError, match=f"in use by another trainer \\(PID {os.getpid()} on host "):
        Trainer(config(), run, progress=False, quiet=True)
    first.run(max_steps=2)  # run() releases the lock when it ends
    Trainer(config(), run, progress=False, quiet=True).close()


def test_the_lock_of_a_killed_trainer_is_released_by_the_os(tmp_path, capsys):
    run = tmp_path / "run"
    parent, child = multiprocessing.get_context("fork").Pipe()
    p = multiprocessing.get_context("fork").Process(target=_hold_lock, args=(str(run), child))
    p.start()
    try:
        assert parent.poll(30) and parent.recv() == "locked"
        with pytest.raises(RunLockedError, match=f"PID {p.pid} on host"):
            train(config(), run, max_steps=2, progress=False)
        assert not list_checkpoints(run) and not (run / "metrics.jsonl").exists()
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.join()
    t = Trainer(config(), run, progress=False, quiet=False)
    assert f"ended without releasing it (PID {p.pid} on host" in capsys.readouterr().out
    t.close()


def test_a_trainer_that_fails_to_start_releases_the_lock(tmp_path):
    run = trained(tmp_path / "run", 3)
    with pytest.raises(CheckpointError, match="different config"):
        Trainer(from_dict(RunConfig, {**TINY, "model": {**TINY["model"], "prediction": "eps"}}), run, quiet=True)
    Trainer(config(), run, progress=False, quiet=True).close()


# ---- 5. the hash covers the metadata; the step matches the name; a crafted config is refused before it is built

def _edit_header(path: Path, old: bytes, new: bytes) -> None:
    """Replace bytes inside the JSON header with as many bytes (the header length stays valid)."""
    assert len(old) == len(new)
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    assert data[8:8 + n].count(old) >= 1
    path.write_bytes(data[:8] + data[8:8 + n].replace(old, new, 1) + data[8 + n:])


@pytest.mark.parametrize("old,new", [(b'\\"step\\": 3', b'\\"step\\": 9'),  # a resume at a step never reached
                                     (b'\\"name\\": \\"ddpm\\"', b'\\"name\\": \\"flow\\"')])  # another process
def test_metadata_edited_with_the_same_length_is_a_hash_mismatch(tmp_path, old, new):
    run = trained(tmp_path / "run", 3)
    c = list_checkpoints(run)[-1]
    _edit_header(c, old, new)
    with pytest.raises(CheckpointError, match="content hash mismatch"):
        load_checkpoint(c)
    with pytest.raises(CheckpointError, match="none can be read"):
        load_run(run)


def test_a_checkpoint_whose_name_and_step_disagree_is_refused(tmp_path):
    run = trained(tmp_path / "run", 3)
    moved = checkpoint_path(run, 6)
    list_checkpoints(run)[-1].rename(moved)
    with pytest.raises(CheckpointError, match="metadata says step 3 but its name says step 6"):
        load_checkpoint(moved)
    with pytest.raises(CheckpointError, match="none can be read"):
        Trainer(config(), run, progress=False, quiet=True)


def test_a_crafted_huge_config_is_refused_before_anything_is_allocated(tmp_path):
    run = trained(tmp_path / "run", 3)
    c = list_checkpoints(run)[-1]
    tensors, meta = load_checkpoint(c)
    meta["config"]["model"]["params"]["base_channels"] = 100_000  # ~7e12 weights: 29 TB as float32
    save_checkpoint(c, tensors, meta)  # with a valid hash: the hash is no signature
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    t0 = time.monotonic()
    with pytest.raises(CheckpointError, match=r"weights do not fit the model its config describes.*refused before"):
        load_run(c)
    assert time.monotonic() - t0 < 2.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 200 * 1024


# ---- 6. a full disk leaves no partial file and names the path

class _FullDisk:
    """A file whose writes stop half-way with ENOSPC, as on a full disk (the first half reaches the file)."""

    def __init__(self, f):
        self.f = f

    def write(self, data: bytes) -> int:
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()


def test_a_full_disk_during_a_checkpoint_removes_the_partial_file_and_names_the_path(tmp_path, monkeypatch):
    run = trained(tmp_path / "run", 2, ckpt_every=2)
    monkeypatch.setattr(ckpt_module, "open", lambda p, mode: _FullDisk(open(p, mode)), raising=False)
    with pytest.raises(OSError, match=r"could not write checkpoint .*ckpt-00000004\.safetensors: No space") as info:
        train(config(ckpt_every=2), run, max_steps=4, progress=False)
    assert info.value.errno == errno.ENOSPC
    assert not list((run / "checkpoints").glob(".ckpt-*")) and not checkpoint_path(run, 4).exists()
    monkeypatch.undo()
    assert train(config(ckpt_every=2), run, max_steps=4, progress=False)["step"] == 4  # lock released, resumes


def test_a_full_disk_writing_the_metrics_log_names_it(tmp_path, monkeypatch):
    real_open = open
    monkeypatch.setattr(trainer_module, "open", lambda p, mode: _FullDisk(real_open(p, mode)), raising=False)
    with pytest.raises(OSError, match=r"writing .*metrics\.jsonl failed: No space left"):
        train(config(), tmp_path / "run", max_steps=2, progress=False)


def test_leftover_temporary_files_are_removed_at_the_next_start_and_said(tmp_path, capsys):
    run = trained(tmp_path / "run", 3)
    leftover = run / "checkpoints" / ".ckpt-00000006.safetensors.tmp-4194301"
    leftover.write_bytes(b"half a checkpoint")
    Trainer(config(), run, progress=False, quiet=False).close()
    assert not leftover.exists()
    assert f"removed {leftover}: a partial checkpoint" in capsys.readouterr().out


# ---- 7. an empty dataset is refused at construction, not looped over forever

def test_an_empty_dataset_is_refused_at_once(tmp_path):
    cfg = from_dict(RunConfig, {**TINY, "data": {"name": "digits", "options": {"limit": 0}}})
    t0 = time.monotonic()
    with pytest.raises(ValueError, match=r"dataset 'digits' with options \{'limit': 0\} has no items"):
        Trainer(cfg, tmp_path / "run", progress=False, quiet=True)
    assert time.monotonic() - t0 < 5


# ---- old checkpoints still load

def _format_1_hash(tensors: dict[str, torch.Tensor]) -> str:
    """The format-1 content hash, as torchdiffusion wrote it: names and raw bytes of the tensors only."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].contiguous().reshape(-1)
        h.update(k.encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def test_a_format_1_checkpoint_still_loads_samples_and_resumes(tmp_path):
    run = trained(tmp_path / "run", 3)
    c = list_checkpoints(run)[-1]
    tensors, meta = load_checkpoint(c)
    old = {k: v for k, v in meta.items() if k not in ("format_version", "content_hash")}
    save_file(tensors, str(c), metadata={"torchdiffusion": json.dumps(
        {"format_version": 1, "content_hash": _format_1_hash(tensors), **old})})
    assert load_checkpoint(c)[1]["format_version"] == 1
    assert load_run(run).meta["step"] == 3
    t = Trainer(config(), run, progress=False, quiet=True)
    assert t.resumed_from == c and t.step == 3
    t.run(max_steps=6)
    assert load_checkpoint(checkpoint_path(run, 6))[1]["format_version"] == 2
    save_file({**tensors, "rng.noise": tensors["rng.noise"] ^ 1}, str(c), metadata={"torchdiffusion": json.dumps(
        {"format_version": 1, "content_hash": _format_1_hash(tensors), **old})})
    with pytest.raises(CheckpointError, match="content hash mismatch"):  # format 1 still checks its tensors
        load_checkpoint(c)


def test_a_full_disk_while_cutting_the_log_back_leaves_no_partial_file(tmp_path, monkeypatch):
    import errno
    import json
    from pathlib import Path

    from torchdiffusion.train.run_state import truncate_log

    log = tmp_path / "metrics.jsonl"
    log.write_text("".join(json.dumps({"step": s}) + "\n" for s in range(1, 6)))

    def full(self, text, *a, **k):
        Path.write_bytes(self, text[: len(text) // 2].encode())
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError, match="metrics.jsonl back to step 2 failed: No space left"):
        truncate_log(log, 2)
    monkeypatch.undo()
    assert not (tmp_path / "metrics.jsonl.tmp").exists() and len(log.read_text().splitlines()) == 5
