"""Run state that a resume must carry: host RNG streams, the last K checkpoints, a skipped non-finite step."""

import json
import random

import numpy as np

from torchdiffusion.train.checkpoint import list_checkpoints
from torchdiffusion.train.trainer import Trainer

from test_bad_inputs import MLP, cfg


def test_resume_restores_the_python_and_numpy_rng_streams(tmp_path):
    run = tmp_path / "run"
    Trainer(cfg(base=MLP), run, progress=False, quiet=True).run(max_steps=4)  # the last checkpoint is at step 4
    expected = [random.random() for _ in range(3)], np.random.rand(3)  # the streams from that checkpoint on
    random.seed(123)
    np.random.seed(123)
    t = Trainer(cfg(base=MLP), run, progress=False, quiet=True)
    assert t.resumed_from is not None and t.step == 4
    assert [random.random() for _ in range(3)] == expected[0]
    assert np.array_equal(np.random.rand(3), expected[1])


def test_only_the_last_k_checkpoints_are_kept_and_stale_temporaries_go(tmp_path):
    run = tmp_path / "run"
    Trainer(cfg("train.ckpt_every=1", "train.keep_last=2", base=MLP), run, progress=False, quiet=True).run(max_steps=3)
    stale = run / "checkpoints" / ".ckpt-00000009.safetensors.tmp-999"  # what a kill mid-write leaves
    stale.write_bytes(b"partial")
    Trainer(cfg("train.ckpt_every=1", "train.keep_last=2", base=MLP), run, progress=False, quiet=True).run(max_steps=6)
    assert [p.name for p in list_checkpoints(run)] == ["ckpt-00000005.safetensors", "ckpt-00000006.safetensors"]
    assert not stale.exists()


def test_a_single_non_finite_step_is_skipped_named_and_training_goes_on(tmp_path, capsys):
    t = Trainer(cfg("train.nan_policy=skip", base=MLP), tmp_path / "run", progress=False, quiet=False)
    real, calls = t.loss, []

    def once_nan(x0, labels, mine=slice(None), **c):
        calls.append(1)
        out = real(x0, labels, mine, **c)
        return out * float("nan") if len(calls) == 3 else out

    t.loss = once_nan
    result = t.run(max_steps=5)
    assert result["step"] == 5  # five applied updates; the NaN step is not counted
    assert "non-finite loss nan at step 3 (data epoch 0, position 24); step skipped" in capsys.readouterr().out
    log = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5] and all(np.isfinite(r["loss"]) for r in log)
