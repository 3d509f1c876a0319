"""torchrun with 2 CPU processes (gloo) trains a token model, masked diffusion (MDLM) on a tiny character-level text,
to the same losses and weights as 1 process with the same global batch: the trainer's discrete objectives draw t and
the masks for the whole global micro-batch on every rank and put only this rank's rows through the network."""

from __future__ import annotations

import pytest
import torch

from torchdiffusion.config import load_config
from torchdiffusion.train.checkpoint import list_checkpoints, load_checkpoint
from torchdiffusion.train.trainer import Trainer

from test_discrete_text import fake_verses, tiny_overrides
from test_distributed import losses, torchrun

STEPS = 6
LR = 1e-3


def test_two_processes_train_a_masked_diffusion_model_as_one(tmp_path):
    verses = fake_verses(tmp_path / "verses.txt")
    # float32: the weights are compared at float32's rounding (bf16 autocast rounds one batch of 2B and two of B
    # differently, far above lr / 100)
    overrides = tiny_overrides(verses, "kjv_mdlm") + [f"train.lr={LR}", "train.ckpt_every=3", "train.precision=fp32"]
    one = tmp_path / "one"
    Trainer(load_config("kjv_mdlm", overrides), one, progress=False, quiet=True).run(max_steps=STEPS)

    two = tmp_path / "two"
    extra = tuple(arg for o in overrides for arg in ("--set", o))
    proc = torchrun("kjv_mdlm", two, STEPS, extra=extra)
    log = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, log

    assert len(losses(one)) == STEPS and losses(two) == pytest.approx(losses(one), rel=1e-5, abs=1e-6)
    w1, _ = load_checkpoint(list_checkpoints(one)[-1])
    w2, meta = load_checkpoint(list_checkpoints(two)[-1])
    assert meta["world_size"] == 2 and meta["step"] == STEPS
    keys = [k for k in w1 if k.startswith(("model.", "ema."))]
    assert keys and set(keys) <= set(w2)
    diffs = torch.cat([(w2[k] - w1[k]).abs().flatten() for k in keys])
    # Adam's m / sqrt(v) can turn rounding differences of near-zero gradients into steps of up to lr: those may
    # drift by lr per step; every other entry agrees within lr / 100 (as test_distributed.py's Gaussian runs)
    assert diffs.max() <= STEPS * LR
    assert (diffs > LR / 100).float().mean() < 0.01, f"{(diffs > LR / 100).sum()} of {diffs.numel()} differ"
