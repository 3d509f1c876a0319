"""`distill --dropout P`: the student's U-Net trains with dropout (its teacher's weights still load, since dropout
has none), samples without it, and keeps it as an option a resumed run must repeat; reflow's rollout calls are the
sampler's own, without dropout."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from torchdiffusion.cli import main


def test_a_dropout_student_trains_with_dropout_and_samples_without(tiny_run, tmp_path, capsys):
    from torchdiffusion.loading import load_run

    out = tmp_path / "reflow"
    base = ["distill", str(tiny_run), "--method", "reflow", "--out", str(out), "--pairs", "8", "--pair-nfe", "3",
            "--batch-size", "4", "--no-progress"]
    assert main(base + ["--max-steps", "2", "--dropout", "0.3"]) == 0
    assert json.loads((out / "config.json").read_text())["model"]["params"]["dropout"] == 0.3
    student = load_run(out).model
    assert not student.training and student.backbone.config.dropout == 0.3
    x, sigma = torch.randn(2, *student.backbone.config.data_shape), torch.full((2,), 1.0)
    with torch.no_grad():
        assert torch.equal(student(x, sigma), student(x, sigma))  # sampled without dropout
        student.train()
        assert not torch.equal(student(x, sigma), student(x, sigma))  # trained with it
    capsys.readouterr()
    assert main(["sample", str(out), "--steps", "2", "--num", "2", "--tiles", str(tmp_path / "t.png")]) == 0
    capsys.readouterr()
    assert main(base + ["--max-steps", "3"]) == 2  # resumed without it
    assert "dropout: saved 0.3 vs now 0.0" in capsys.readouterr().err


def test_reflow_rollout_runs_the_student_without_dropout(tiny_run):
    from torchdiffusion.distill.reflow import ReflowDistiller
    from torchdiffusion.distill.run import student_config
    from torchdiffusion.distill.teacher import load_teacher

    t = load_teacher(tiny_run)
    student, _ = t.build_student(student_config(t.config, "reflow", 2, dropout=0.5))
    student.backbone.load_state_dict(t.model.backbone.state_dict())
    student.train()
    z = torch.randn(6, *student.backbone.config.data_shape)
    distiller = ReflowDistiller((z, torch.randn_like(z)), student, grid_share=1.0, rollout=1.0, grid_steps=(4,))
    level = torch.full((6,), 3)  # the 4-step grid's last level: three student calls to reach it
    first, second = distiller._rollout(z, level), distiller._rollout(z, level)
    assert torch.equal(first, second) and student.training


def test_dropout_on_a_backbone_without_it_or_out_of_range_is_refused(tmp_path, capsys):
    cfg = {"data": {"name": "toy:moons", "options": {"n": 64}}, "process": {"name": "flow"},
           "model": {"backbone": "mlp", "prediction": "velocity", "params": {"dim": 2, "hidden": 16, "depth": 1}},
           "train": {"batch_size": 16, "ckpt_every": 2, "sample_every": 0, "log_every": 2},
           "sample": {"sampler": "heun", "steps": 2, "num": 4}}
    (tmp_path / "mlp.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "mlp.yaml"), "--out", str(tmp_path / "run"), "--max-steps", "2",
                 "--no-progress"]) == 0
    capsys.readouterr()
    base = ["distill", str(tmp_path / "run"), "--method", "progressive", "--start-steps", "2", "--max-steps", "2",
            "--no-progress", "--out", str(tmp_path / "pd")]
    assert main(base + ["--dropout", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "dropout" in err and "'mlp' has none" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as e:
        main(base + ["--dropout", "1"])
    assert e.value.code == 2 and "must be in [0, 1)" in capsys.readouterr().err


def test_the_student_dropout_is_the_option_not_the_teachers(tiny_run):
    from torchdiffusion.distill.run import student_config
    from torchdiffusion.distill.teacher import load_teacher

    cfg = load_teacher(tiny_run).config
    cfg.model.params = {**cfg.model.params, "dropout": 0.2}  # a teacher trained with dropout
    assert student_config(cfg, "progressive", 1).model.params["dropout"] == 0.0
    assert student_config(cfg, "reflow", 2, dropout=0.1).model.params["dropout"] == 0.1
    assert cfg.model.params["dropout"] == 0.2  # the teacher's own config is left alone
