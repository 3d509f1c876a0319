"""`train --init-from RUN`: a new run starts from another run's EMA weights at step 0 with a fresh optimizer, keeps
where it started in its checkpoints, ignores the option on resume, and refuses weights of another size (exit 2)."""

import pytest
import torch
import yaml

from torchdiffusion.cli import main
from torchdiffusion.config import load_config
from torchdiffusion.train.checkpoint import CheckpointError, list_checkpoints, load_checkpoint
from torchdiffusion.train.resume import with_prefix
from torchdiffusion.train.trainer import Trainer

from test_train_cli import TINY, tiny_config  # noqa: F401 (the fixture)


def ema_of(run):
    return with_prefix(load_checkpoint(list_checkpoints(run)[-1])[0], "ema.")


def test_a_new_run_starts_from_the_source_runs_ema_weights_and_resumes_from_its_own(tiny_config, tmp_path):
    cfg = load_config(tiny_config)
    source = tmp_path / "source"
    Trainer(cfg, source, progress=False, quiet=True).run(max_steps=3)
    start = ema_of(source)
    raw, _ = load_checkpoint(list_checkpoints(source)[-1])
    assert any(not torch.equal(raw[f"model.{k}"], v) for k, v in start.items())  # EMA, not raw, is the start
    fresh = Trainer(cfg, tmp_path / "fresh", progress=False, quiet=True)
    fresh.close()
    assert any(not torch.equal(v, fresh.model.backbone.state_dict()[k]) for k, v in start.items())

    t = Trainer(cfg, tmp_path / "tuned", progress=False, quiet=True, init_from=source)
    assert t.step == 0 and not t.opt.state  # a fresh optimizer at step 0
    for k, v in start.items():
        assert torch.equal(t.model.backbone.state_dict()[k], v), k
        assert torch.equal(t.ema.backbone.state_dict()[k], v), k
    t.run(max_steps=2)
    _, meta = load_checkpoint(list_checkpoints(tmp_path / "tuned")[-1])
    assert meta["step"] == 2 and meta["init_from"]["step"] == 3
    assert meta["init_from"]["path"] == str(list_checkpoints(source)[-1])

    tuned = ema_of(tmp_path / "tuned")
    again = Trainer(cfg, tmp_path / "tuned", progress=False, quiet=True, init_from=source)  # resumes: option unused
    again.close()
    assert again.step == 2 and again.init_from["step"] == 3
    for k, v in tuned.items():
        assert torch.equal(again.ema.backbone.state_dict()[k], v), k


def test_weights_of_another_size_are_refused_with_exit_2(tiny_config, tmp_path, capsys):
    cfg = load_config(tiny_config)
    Trainer(cfg, tmp_path / "source", progress=False, quiet=True).run(max_steps=3)
    wider = load_config(tiny_config, ["model.params.base_channels=16"])
    with pytest.raises(CheckpointError, match="do not fit this config's model"):
        Trainer(wider, tmp_path / "wider", progress=False, quiet=True, init_from=tmp_path / "source")
    other = tmp_path / "wider.yaml"
    other.write_text(yaml.safe_dump({**TINY, "model": {**TINY["model"], "params": {
        **TINY["model"]["params"], "base_channels": 16}}}))
    code = main(["train", str(other), "--init-from", str(tmp_path / "source"), "--max-steps", "1",
                 "--out", str(tmp_path / "cli"), "--no-progress"])
    assert code == 2 and "do not fit this config's model" in capsys.readouterr().err
    assert main(["train", str(tiny_config), "--init-from", str(tmp_path / "nowhere"), "--max-steps", "1",
                 "--out", str(tmp_path / "cli2"), "--no-progress"]) == 2
