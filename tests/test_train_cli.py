"""Training resumes exactly; the CLI trains, samples and reports; bad input gets a clear error."""

import json

import numpy as np
import pytest
import torch
import yaml

from torchdiffusion.cli import main
from torchdiffusion.config import ConfigError, load_config
from torchdiffusion.train.checkpoint import CheckpointError, list_checkpoints, load_checkpoint
from torchdiffusion.train.trainer import Trainer

TINY = {
    "data": {"name": "digits", "limit": 64},
    "process": {"name": "ddpm", "schedule": "cosine", "T": 50},
    "model": {"backbone": "unet", "prediction": "v",
              "params": {"in_channels": 1, "image_size": 8, "base_channels": 8, "channel_mult": [1, 2],
                         "num_res_blocks": 1, "attn_resolutions": [4], "num_heads": 2}},
    "train": {"batch_size": 8, "accumulate": 2, "lr": 1e-3, "warmup_steps": 2, "ckpt_every": 3, "log_every": 1,
              "sample_every": 0, "keep_last": 5},
    "sample": {"sampler": "ddim", "steps": 3, "num": 4},
}


@pytest.fixture
def tiny_config(tmp_path):
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(TINY))
    return p


def losses(run_dir):
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_interrupted_and_resumed_training_equals_uninterrupted(tiny_config, tmp_path):
    cfg = load_config(tiny_config)
    a = tmp_path / "straight"
    Trainer(cfg, a, progress=False, quiet=True).run(max_steps=7)
    b = tmp_path / "resumed"
    Trainer(cfg, b, progress=False, quiet=True).run(max_steps=4)
    # drop the final (step 4) checkpoint: resume from step 3 and replay step 4 identically
    list_checkpoints(b)[-1].unlink()
    lines = (b / "metrics.jsonl").read_text().splitlines()[:3]
    (b / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    t = Trainer(cfg, b, progress=False, quiet=True)
    assert t.step == 3 and t.resumed_from is not None
    t.run(max_steps=7)
    assert losses(a) == losses(b)
    wa, _ = load_checkpoint(list_checkpoints(a)[-1])
    wb, _ = load_checkpoint(list_checkpoints(b)[-1])
    for k in wa:
        if k.startswith(("model.", "ema.", "optim.")):
            assert torch.equal(wa[k], wb[k]), k


def test_resume_with_a_different_model_config_is_refused(tiny_config, tmp_path):
    cfg = load_config(tiny_config)
    Trainer(cfg, tmp_path / "r", progress=False, quiet=True).run(max_steps=3)
    other = load_config(tiny_config, ["model.prediction=eps"])
    with pytest.raises(CheckpointError, match="model"):
        Trainer(other, tmp_path / "r", progress=False, quiet=True)


def test_corrupt_newest_checkpoint_is_detected_and_refused_until_moved_aside(tiny_config, tmp_path):
    cfg = load_config(tiny_config)
    Trainer(cfg, tmp_path / "r", progress=False, quiet=True).run(max_steps=6)
    newest = list_checkpoints(tmp_path / "r")[-1]
    data = bytearray(newest.read_bytes())
    data[-10] ^= 0xFF
    newest.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="hash|truncated"):
        load_checkpoint(newest)
    with pytest.raises(CheckpointError, match=f"(?s)cannot be read.*{newest.name}"):  # falling back loses steps
        Trainer(cfg, tmp_path / "r", progress=False, quiet=True)
    newest.rename(tmp_path / newest.name)  # the user moves it aside: the older one resumes
    t = Trainer(cfg, tmp_path / "r", progress=False, quiet=True)
    assert t.step == 3
    t.close()


def test_cli_train_then_sample_writes_grid_and_npz(tiny_config, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(tiny_config), "--max-steps", "2", "--out", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    grid, npz = tmp_path / "g.png", tmp_path / "s.npz"
    assert main(["sample", str(run), "--num", "5", "--steps", "3", "--tiles", str(grid), "--npz", str(npz)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["nfe"] == 3 and out["seconds"] >= 0 and out["tiles"] == str(grid) and out["npz"] == str(npz)
    arr = np.load(npz)["arr_0"]
    assert arr.dtype == np.uint8 and arr.shape == (5, 8, 8, 1)
    from PIL import Image
    assert Image.open(grid).size[0] >= 64


def test_cli_reports_bad_config_keys_and_values(tiny_config, tmp_path, capsys):
    assert main(["train", str(tiny_config), "--set", "train.lrr=1", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "train.lrr" in err and "lr" in err
    assert main(["train", str(tiny_config), "--set", "process.schedule=cosin", "--out", str(tmp_path / "x")]) == 2
    assert "process.schedule" in capsys.readouterr().err
    assert main(["sample", str(tmp_path / "missing")]) == 2
    assert "neither" in capsys.readouterr().err


def test_config_errors_name_the_key_path():
    with pytest.raises(ConfigError, match="train.batch_size"):
        load_config(None, ["train.batch_size=abc"])
    with pytest.raises(ConfigError, match="divisible"):
        load_config(None, ["train.batch_size=10", "train.accumulate=3"])
    with pytest.raises(ConfigError, match="not found"):
        load_config("no_such_config")


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "toy2d", "textures", "digits", "fashion_mnist_sr7",
                                  "fashion_mnist_sr14"])
def test_packaged_configs_load_and_build(name):
    from torchdiffusion.build import build_model
    cfg = load_config(name)
    model, _ = build_model(cfg.model, cfg.process)
    assert model.sigma_max > model.sigma_min > 0
