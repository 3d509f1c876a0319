"""End to end on the command line: a tiny flow-matching run (OT coupling, logit-normal times) and a consistency-
training run train and sample; `distill` turns a run into students that `sample --steps N` runs in N calls, and
resumes."""

from __future__ import annotations

import json

import pytest
import yaml

from torchdiffusion.cli import main

FLOW = {
    "data": {"name": "toy:moons", "options": {"n": 256}},
    "process": {"name": "flow"},
    "model": {"backbone": "mlp", "prediction": "velocity", "params": {"dim": 2, "hidden": 32, "depth": 2}},
    "loss": {"coupling": "ot", "t_sampling": "logit_normal"},
    "train": {"batch_size": 64, "lr": 1e-3, "warmup_steps": 2, "ckpt_every": 5, "sample_every": 0, "log_every": 5},
    "sample": {"sampler": "heun", "steps": 4, "num": 16},
}


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def flow_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("flow")
    (out / "flow.yaml").write_text(yaml.safe_dump(FLOW))
    assert main(["train", str(out / "flow.yaml"), "--out", str(out / "run"), "--max-steps", "10",
                 "--no-progress"]) == 0
    return out / "run"


def test_a_flow_matching_run_samples_with_ode_samplers(flow_run, capsys, tmp_path):
    capsys.readouterr()
    for sampler, steps in [("heun", "4"), ("dpmpp_2m", "5"), ("ipndm", "5")]:
        assert main(["sample", str(flow_run), "--sampler", sampler, "--steps", steps, "--num", "8",
                     "--npz", str(tmp_path / f"{sampler}.npz")]) == 0
        assert last_json(capsys)["num"] == 8


def test_consistency_training_run_trains_and_samples(tmp_path, capsys):
    cfg = {**FLOW, "process": {"name": "edm"}, "loss": {"kind": "consistency"},
           "model": {**FLOW["model"], "prediction": "consistency"}, "sample": {"sampler": "consistency", "steps": 2}}
    (tmp_path / "ct.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "ct.yaml"), "--out", str(tmp_path / "ct"), "--max-steps", "6",
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["sample", str(tmp_path / "ct"), "--num", "8", "--npz", str(tmp_path / "ct.npz")]) == 0
    assert last_json(capsys)["nfe"] == 2


@pytest.mark.parametrize("method", ["progressive", "consistency", "reflow"])
def test_distill_makes_a_run_that_sample_reads(flow_run, tmp_path, capsys, method):
    out = tmp_path / method
    args = ["distill", str(flow_run), "--method", method, "--out", str(out), "--start-steps", "4", "--levels", "6",
            "--pairs", "64", "--pair-nfe", "4", "--batch-size", "16", "--no-progress"]
    assert main(args + ["--max-steps", "4", "--ckpt-every", "2"]) == 0
    assert last_json(capsys)["step"] == 4
    for n in (1, 2):
        assert main(["sample", str(out), "--steps", str(n), "--num", "8", "--npz", str(tmp_path / "s.npz")]) == 0
        assert last_json(capsys)["nfe"] == n  # N steps of a student are N network evaluations
    if method == "progressive":  # each round's student is a run of its own
        assert main(["sample", str(out / "rounds" / "steps-2"), "--num", "4"]) == 0
        assert last_json(capsys)["steps"] == 2
    else:  # resumed with more steps
        assert main(args + ["--max-steps", "6"]) == 0
        assert last_json(capsys)["step"] == 6


def test_distill_refuses_other_options_on_resume_and_bad_input(flow_run, tmp_path, capsys):
    out = tmp_path / "pd"
    base = ["distill", str(flow_run), "--out", str(out), "--method", "progressive", "--no-progress",
            "--batch-size", "8"]
    assert main(base + ["--max-steps", "2", "--start-steps", "2"]) == 0
    capsys.readouterr()
    assert main(base + ["--max-steps", "2", "--start-steps", "4"]) == 2
    assert "start_steps: saved 2 vs now 4" in capsys.readouterr().err
    assert main(base[:3] + [str(tmp_path / "pd3"), "--method", "progressive", "--start-steps", "3"]) == 2
    assert "power of 2" in capsys.readouterr().err
    assert main(["distill", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2


@pytest.mark.parametrize("method", ["progressive", "consistency", "reflow"])
def test_distill_an_image_unet_ddpm_teacher(tiny_run, tmp_path, capsys, method):
    """The tiny DDPM U-Net run of conftest: a discrete-time teacher on images distils with every method."""
    out = tmp_path / method
    assert main(["distill", str(tiny_run), "--method", method, "--out", str(out), "--max-steps", "2",
                 "--start-steps", "2", "--levels", "4", "--pairs", "8", "--pair-nfe", "3", "--batch-size", "4",
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["sample", str(out), "--steps", "2", "--num", "4", "--tiles", str(tmp_path / "t.png")]) == 0
    assert last_json(capsys)["nfe"] == 2
