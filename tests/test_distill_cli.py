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


@pytest.mark.parametrize("how", ["max_steps_flag", "config"])
def test_ict_curriculum_runs_over_the_run_horizon(tmp_path, monkeypatch, how):
    """iCT's level count follows the step the run ends at: `--max-steps` if given (train.max_steps stays 10000),
    else train.max_steps; the last step sees progress (K - 1) / K, so the curriculum reaches its final stage."""
    from torchdiffusion.losses import consistency

    seen: list[float] = []
    real = consistency.ict_num_levels
    monkeypatch.setattr(consistency, "ict_num_levels", lambda p, *a, **k: seen.append(p) or real(p, *a, **k))
    train = {**FLOW["train"], "max_steps": 10_000 if how == "max_steps_flag" else 8}
    cfg = {**FLOW, "process": {"name": "edm"}, "loss": {"kind": "consistency"}, "train": train,
           "model": {**FLOW["model"], "prediction": "consistency"}, "sample": {"sampler": "consistency", "steps": 2}}
    (tmp_path / "ct.yaml").write_text(yaml.safe_dump(cfg))
    flag = ["--max-steps", "8"] if how == "max_steps_flag" else []
    assert main(["train", str(tmp_path / "ct.yaml"), "--out", str(tmp_path / "ct"), "--no-progress", *flag]) == 0
    assert seen == pytest.approx([k / 8 for k in range(8)])
    assert real(seen[-1]) == 1281  # the last of the 8 stages (K/K' = 8): s1 + 1 levels


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


@pytest.mark.parametrize("method,sampler", [("consistency", "consistency"), ("reflow", "ddim_fewstep"),
                                            ("progressive", "ddim_fewstep")])
def test_eval_scores_a_distilled_student_at_its_own_budgets(flow_run, tmp_path, capsys, method, sampler):
    """teacher -> distill -> eval: by default a student is scored with its own few-step sampler, N calls for
    --nfe N, and without bits/dim (its samples come from the few-step map, not from its ODE)."""
    out = tmp_path / method
    assert main(["distill", str(flow_run), "--method", method, "--out", str(out), "--max-steps", "3",
                 "--start-steps", "2", "--levels", "6", "--pairs", "32", "--pair-nfe", "3", "--batch-size", "16",
                 "--no-progress"]) == 0
    assert main(["eval", str(out), "--num", "32", "--nfe", "1,2", "--no-plots", "--no-progress"]) == 0
    report = json.loads((out / "eval" / "report.json").read_text())
    assert [(r["sampler"], r["nfe_requested"], r["nfe_used"]) for r in report["results"]] == [
        (sampler, 1, 1), (sampler, 2, 2)]
    assert all(r["finite_fraction"] == 1.0 and r["swd"] >= 0 and r["mmd"] == r["mmd"] for r in report["results"])
    assert "bpd" not in report and "bpd" not in report["metrics"]
    assert f"--samplers {sampler}" in report["command"]
    if method == "consistency":  # no likelihood to report: one paragraph, exit 2
        capsys.readouterr()
        assert main(["eval", str(out), "--num", "8", "--nfe", "1", "--metrics", "bpd", "--no-plots"]) == 2
        assert "consistency model" in capsys.readouterr().err


ODE_SAMPLERS = sorted(k for k, m in __import__("torchdiffusion.sampling", fromlist=["METHODS"]).METHODS.items()
                      if m.kind == "ODE")


@pytest.fixture(scope="module")
def flow_reference(flow_run, tmp_path_factory):
    """The flow run's probability-flow map at seed 0, by RK4 with 64 steps."""
    import numpy as np

    path = tmp_path_factory.mktemp("ref") / "rk4.npz"
    assert main(["sample", str(flow_run), "--sampler", "rk4", "--steps", "64", "--num", "16", "--npz", str(path)]) == 0
    return np.load(path)["arr_0"]


@pytest.mark.parametrize("sampler", ODE_SAMPLERS)
def test_a_flow_run_samples_with_every_ode_sampler(flow_run, flow_reference, tmp_path, capsys, sampler):
    """Every registered deterministic sampler draws from a flow-matching run: finite, the run's shape, and (at 24
    steps) near the flow's own map, the same seeds' RK4 solution."""
    import numpy as np

    capsys.readouterr()
    assert main(["sample", str(flow_run), "--sampler", sampler, "--steps", "24", "--num", "16", "--seed", "0",
                 "--npz", str(tmp_path / "s.npz")]) == 0
    assert last_json(capsys)["num"] == 16
    x = np.load(tmp_path / "s.npz")["arr_0"]
    assert x.shape == flow_reference.shape == (16, 2) and np.isfinite(x).all()
    err = np.abs(x - flow_reference).max() / np.abs(flow_reference).max()
    assert err < 5e-3, err  # the 10-step field is nearly straight: a wrong time or scale, not step error, fails this


@pytest.fixture(scope="module")
def class_run(tmp_path_factory):
    """The tiny DDPM U-Net of conftest made class-conditional (digits' 10 labels, 10% dropped), trained 2 steps."""
    from test_train_cli import TINY

    out = tmp_path_factory.mktemp("cond")
    cfg = {**TINY, "model": {**TINY["model"], "params": {**TINY["model"]["params"], "num_classes": 10}},
           "train": {**TINY["train"], "cond_drop": 0.1}}
    (out / "cond.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(out / "cond.yaml"), "--out", str(out / "run"), "--max-steps", "2",
                 "--no-progress"]) == 0
    return out / "run"


def test_reflow_of_a_class_conditional_teacher_draws_labelled_pairs(class_run, tmp_path, capsys):
    """The pairs are drawn per class (labels from the data's frequencies) and kept with their labels; the student is
    class-conditional and samples a chosen class; pairs without labels (an earlier version's) are refused."""
    from safetensors.torch import load_file, save_file

    out = tmp_path / "reflow"
    args = ["distill", str(class_run), "--method", "reflow", "--out", str(out), "--pairs", "24", "--pair-nfe", "3",
            "--batch-size", "4", "--no-progress"]
    assert main(args + ["--max-steps", "2"]) == 0
    pairs = load_file(str(out / "reflow_pairs.safetensors"))
    y = pairs["class_labels"]
    assert y.shape == (24,) and y.dtype.is_floating_point is False and 0 <= int(y.min()) and int(y.max()) < 10
    assert len(set(y.tolist())) > 1  # drawn per class, not the null label
    capsys.readouterr()
    assert main(["sample", str(out), "--steps", "1", "--num", "4", "--class-label", "3",
                 "--npz", str(tmp_path / "s.npz")]) == 0
    assert last_json(capsys)["nfe"] == 1
    assert main(args + ["--max-steps", "3"]) == 0  # resumed with the kept pairs
    assert last_json(capsys)["step"] == 3
    save_file({"z": pairs["z"], "x1": pairs["x1"]}, str(out / "reflow_pairs.safetensors"))
    assert main(args + ["--max-steps", "4"]) == 2
    err = capsys.readouterr().err
    assert "without class labels" in err and "Traceback" not in err


def test_reflow_budget_includes_drawing_its_pairs(flow_run, tmp_path, monkeypatch):
    """--max-cpu-minutes covers the whole command: pairs that take the budget leave no training steps."""
    import torchdiffusion.distill.run as run_mod

    clock = {"t": 0.0}
    monkeypatch.setattr(run_mod.time, "process_time", lambda: clock["t"])
    real_draw = run_mod.reflow_pairs

    def slow_draw(*a, **k):  # drawing the pairs "costs" two CPU-minutes on the fake clock
        clock["t"] += 120.0
        return real_draw(*a, **k)

    monkeypatch.setattr(run_mod, "reflow_pairs", slow_draw)
    seen = {}

    def fit(*a, max_cpu_minutes=None, start=0, **k):
        seen["budget"] = max_cpu_minutes
        return start

    monkeypatch.setattr(run_mod, "fit", fit)
    opts = run_mod.DistillOptions(method="reflow", max_steps=4, batch_size=8, pairs=16, pair_nfe=2)
    run_mod.distill(flow_run, tmp_path / "rf", opts, max_cpu_minutes=3.0, progress=False)
    assert seen["budget"] == pytest.approx(1.0)  # 3 minutes less the 2 the pairs took
    run_mod.distill(flow_run, tmp_path / "rf2", opts, max_cpu_minutes=1.0, progress=False)
    assert 0 < seen["budget"] < 1e-6  # spent before training: training stops at once, never unbudgeted


def test_a_reflow_student_of_a_ddpm_teacher_keeps_its_parameterisation_and_starts_as_it(tiny_run, tmp_path):
    """Reflow of a teacher that is not a linear flow: the student keeps the teacher's process and prediction and
    its weights, so before training its denoiser is the teacher's (reflow trains D(x1 + sigma z, sigma) -> x1 on the
    pairs' straight lines, the same in any parameterisation; Liu et al. 2023 start 2-rectified flow from the 1-)."""
    import torch

    from torchdiffusion.distill.run import DistillOptions, distill
    from torchdiffusion.loading import load_run

    out = tmp_path / "reflow"
    opts = DistillOptions(method="reflow", max_steps=1, batch_size=4, lr=1e-12, pairs=8, pair_nfe=3)
    distill(tiny_run, out, opts, progress=False)
    teacher, student = load_run(tiny_run), load_run(out)
    assert (student.config.process.name, student.config.model.prediction) == (
        teacher.config.process.name, teacher.config.model.prediction)
    x = torch.randn(3, *teacher.data_shape, generator=torch.Generator().manual_seed(0))
    for sigma in (0.05, 1.0, 20.0):
        s = torch.full((3,), sigma)
        with torch.no_grad():
            assert torch.allclose(student.model(x * sigma, s), teacher.model(x * sigma, s), atol=1e-5)


def tiny_reflow(run, out) -> list[str]:
    """The command line of a tiny reflow distillation of run into out (add --max-steps)."""
    return ["distill", str(run), "--method", "reflow", "--out", str(out), "--pairs", "8", "--pair-nfe", "3",
            "--batch-size", "4", "--no-progress"]


def rewrite_newest_meta(out, edit) -> None:
    """Rewrite out's newest checkpoint with its metadata changed by edit(meta), as an older version wrote it."""
    from torchdiffusion.train.checkpoint import read_checkpoint, save_checkpoint

    path, tensors, meta = read_checkpoint(out)
    edit(meta)
    path.unlink()
    save_checkpoint(path, tensors, meta)


def test_resuming_with_a_teacher_trained_further_is_refused(tiny_run, tmp_path, capsys):
    """A distillation resumed from a teacher whose weights changed since it started (its run trained on) would go on
    from another teacher's pairs and targets: refused with exit 2, naming both; the same teacher resumes, and a run
    saved before the fingerprint existed resumes unchecked."""
    import shutil

    import torch

    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_run, teacher)
    out = tmp_path / "reflow"
    args = tiny_reflow(teacher, out)
    assert main(args + ["--max-steps", "1"]) == 0
    assert main(args + ["--max-steps", "2"]) == 0
    rewrite_newest_meta(out, lambda meta: None)  # unchanged: the reader and writer round-trip
    from torchdiffusion.train.checkpoint import read_checkpoint, save_checkpoint

    path, tensors, meta = read_checkpoint(teacher)
    key = next(k for k in tensors if k.startswith("ema.") and tensors[k].is_floating_point())
    tensors[key] = tensors[key] + 1e-3 * torch.ones_like(tensors[key])
    path.unlink()
    save_checkpoint(path, tensors, meta)
    capsys.readouterr()
    assert main(args + ["--max-steps", "3"]) == 2
    err = capsys.readouterr().err
    assert "another teacher" in err and str(teacher) in err and "new --out" in err
    rewrite_newest_meta(out, lambda meta: meta["distill"].pop("teacher_fingerprint"))
    assert main(args + ["--max-steps", "3"]) == 0


def test_resuming_a_student_of_another_parameterisation_is_refused(tiny_run, tmp_path, capsys):
    """A reflow run written when reflow students were linear flows has a backbone of the same shape: resuming it
    under the teacher's parameterisation would load without error and then be wrong, so it is refused (exit 2)."""
    out = tmp_path / "reflow"
    args = tiny_reflow(tiny_run, out)
    assert main(args + ["--max-steps", "1"]) == 0

    def as_old_flow(meta: dict) -> None:
        meta["config"]["process"]["name"], meta["config"]["model"]["prediction"] = "flow", "velocity"
    rewrite_newest_meta(out, as_old_flow)
    capsys.readouterr()
    assert main(args + ["--max-steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "process 'flow' and prediction 'velocity'" in err and "new --out" in err


def test_reflow_grid_share_trains_where_the_few_step_sampler_calls_the_student(tiny_run, tmp_path, monkeypatch):
    """--grid-share 1: every training time of a DDPM-table student is one the few-step sampler of 1, 2 or 4 calls
    asks its backbone at (recorded from the sampler's own calls), and each such time is trained."""
    import torch

    from torchdiffusion.distill.reflow import ReflowDistiller, grid_times
    from torchdiffusion.loading import load_run
    from torchdiffusion.sampling import sample

    student = load_run(tiny_run).model
    called: list[float] = []
    raw = type(student).raw
    monkeypatch.setattr(type(student), "raw", lambda self, xt, t, **c: (called.extend(t.tolist()), raw(self, xt, t,
                                                                                                       **c))[1])
    x = torch.randn(2, *student.backbone.config.data_shape)
    for n in (1, 2, 4):
        sample(student, x * student.sigma_max, method="ddim_fewstep", nfe=n)
    assert sorted(set(called)) == sorted(set(grid_times(student, (1, 2, 4)).tolist()))
    assert len(called) == 2 * 7 and called.count(student.process.t_max) == 2 * 3  # sigma_max opens every grid

    z = torch.randn(16, *x.shape[1:])
    distiller = ReflowDistiller((z, z.clone()), student, grid_share=1.0)
    called.clear()
    distiller.loss(z, torch.Generator().manual_seed(0))
    distiller.loss(torch.zeros(64, *x.shape[1:]), torch.Generator().manual_seed(1))
    assert set(called) == set(grid_times(student, (1, 2, 4)).tolist())
    with pytest.raises(ValueError, match="grid_share"):
        ReflowDistiller((z, z.clone()), student, grid_share=1.5)


def test_reflow_rollout_trains_at_the_states_the_few_step_sampler_reaches(tiny_run, monkeypatch):
    """--rollout 1: every state below sigma_max the student is trained at (and every call of its rollout) is one the
    1-, 2- or 4-call sampler itself feeds the backbone from the same noise; on the straight line (rollout 0) they are
    not, since the student does not map z to x1. (At sigma_max both train at x1 + sigma_max z, the line's start.)"""
    import torch

    from torchdiffusion.distill.reflow import ReflowDistiller
    from torchdiffusion.loading import load_run
    from torchdiffusion.sampling import sample

    student = load_run(tiny_run).model
    seen: list[tuple[float, torch.Tensor]] = []
    raw = type(student).raw
    monkeypatch.setattr(type(student), "raw", lambda self, xt, t, **c: (
        seen.extend(zip(t.tolist(), xt.detach().clone())), raw(self, xt, t, **c))[1])
    z = torch.randn(1, *student.backbone.config.data_shape)
    with torch.no_grad():
        for n in (1, 2, 4):
            sample(student, z * student.sigma_max, method="ddim_fewstep", nfe=n)
    sampler_states, pairs = list(seen), (z.repeat(32, 1, 1, 1), torch.randn(1, *z.shape[1:]).repeat(32, 1, 1, 1))

    def off_sampler(rollout: float) -> int:
        seen.clear()
        distiller = ReflowDistiller(pairs, student, grid_share=1.0, rollout=rollout)
        distiller.loss(pairs[0], torch.Generator().manual_seed(0))
        below = [(t, x) for t, x in seen if t < student.process.t_max]
        return sum(not any(t == u and torch.allclose(x, y, atol=1e-4) for u, y in sampler_states) for t, x in below)

    assert off_sampler(1.0) == 0 and len(seen) > 32  # the rollout's own calls are the sampler's too
    assert off_sampler(0.0) > 8
    with pytest.raises(ValueError, match="rollout"):
        ReflowDistiller(pairs, student, grid_share=1.0, rollout=-0.1)


def test_reflow_grid_steps_and_pseudo_huber_distance(tiny_run, tmp_path, monkeypatch):
    """grid_steps (1, 2) trains only the levels of the 1- and 2-step grids; distance pseudo_huber is
    sqrt(d * mse + c^2) - c of the same draws' squared error, with iCT's c = 0.00054 sqrt(d)."""
    import math

    import torch

    from torchdiffusion.distill.reflow import ReflowDistiller, grid_times
    from torchdiffusion.loading import load_run

    student = load_run(tiny_run).model
    z = torch.randn(16, *student.backbone.config.data_shape)
    pairs = (z, torch.randn_like(z))
    called: list[float] = []
    raw = type(student).raw
    monkeypatch.setattr(type(student), "raw", lambda self, xt, t, **c: (called.extend(t.tolist()), raw(self, xt, t,
                                                                                                       **c))[1])
    ReflowDistiller(pairs, student, grid_share=1.0, grid_steps=(1, 2)).loss(torch.zeros(64, *z.shape[1:]),
                                                                             torch.Generator().manual_seed(0))
    assert set(called) == set(grid_times(student, (1, 2)).tolist()) and len(set(called)) == 2

    def loss(distance: str) -> torch.Tensor:
        d = ReflowDistiller(pairs, student, grid_share=1.0, rollout=1.0, distance=distance)
        return d.loss(z, torch.Generator().manual_seed(3)).detach()

    d, l2 = z[0].numel(), loss("l2")
    c = 0.00054 * math.sqrt(d)
    torch.testing.assert_close(loss("pseudo_huber"), torch.sqrt(d * l2 + c * c) - c)
    with pytest.raises(ValueError, match="pseudo_huber"):
        ReflowDistiller(pairs, student, distance="l1")
    with pytest.raises(SystemExit) as e:
        main(["distill", str(tiny_run), "--out", "/tmp/unused", "--grid-steps", "1,0"])
    assert e.value.code == 2
    from torchdiffusion.distill.run import DistillOptions, distill

    with pytest.raises(ValueError, match="grid_steps"):  # refused before the teacher is read or pairs drawn
        distill(tmp_path / "no-teacher", tmp_path / "out", DistillOptions(grid_steps="1,x"))


def test_a_reflow_run_saved_before_grid_share_resumes(tiny_run, tmp_path, capsys):
    """A checkpoint whose distill metadata predates --grid-share, --pair-sampler, --rollout and --grid-steps trained
    at uniform times on Heun pairs' straight lines: resuming it under the new defaults (1, unipc, 1, "1,2") is refused
    with all four named, and under 0, heun, 0 and "1,2,4" goes on."""
    from safetensors.torch import load_file, save_file

    out = tmp_path / "reflow"
    args = tiny_reflow(tiny_run, out)
    old = ["--grid-share", "0", "--pair-sampler", "heun", "--rollout", "0", "--grid-steps", "1,2,4"]  # --distance: l2
    assert main(args + old + ["--max-steps", "1"]) == 0

    def before_the_options(meta: dict) -> None:
        for key in ("grid_share", "pair_sampler", "rollout", "grid_steps", "distance"):
            del meta["distill"][key]
    rewrite_newest_meta(out, before_the_options)
    pairs = out / "reflow_pairs.safetensors"  # an older version kept no drawing options with its pairs
    save_file(load_file(str(pairs)), str(pairs))
    capsys.readouterr()
    assert main(args + ["--max-steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "pair_sampler: saved heun vs now unipc" in err and "grid_share: saved 0.0 vs now 1.0" in err
    assert "rollout: saved 0.0 vs now 1.0" in err and "grid_steps: saved 1,2,4 vs now 1,2" in err
    assert main(args + old + ["--max-steps", "2"]) == 0
    assert last_json(capsys)["step"] == 2


def test_reflow_pairs_come_from_the_named_teacher_sampler(tiny_run, tmp_path, capsys):
    """--pair-sampler unipc --pair-nfe 4: the stored x1 are the teacher's UniPC map of the stored z at 4 calls (the
    same function `sample` runs), not Heun's; a stochastic or student sampler is refused (exit 2)."""
    import torch
    from safetensors.torch import load_file

    from torchdiffusion.distill.reflow import reflow_pairs
    from torchdiffusion.loading import load_run

    out = tmp_path / "reflow"
    args = ["distill", str(tiny_run), "--method", "reflow", "--out", str(out), "--pairs", "6", "--pair-nfe", "4",
            "--batch-size", "4", "--max-steps", "1", "--no-progress"]
    assert main(args + ["--pair-sampler", "unipc"]) == 0
    pairs = load_file(str(out / "reflow_pairs.safetensors"))
    teacher = load_run(tiny_run).model
    assert torch.allclose(pairs["x1"], reflow_pairs(teacher, pairs["z"], method="unipc", nfe=4).float(), atol=1e-5)
    assert not torch.allclose(pairs["x1"], reflow_pairs(teacher, pairs["z"], method="heun", nfe=4).float(), atol=1e-3)
    # pairs left by a run that stopped before its first checkpoint are not reused under other drawing options
    (out / "checkpoints").rename(tmp_path / "moved")
    assert main(args + ["--pair-sampler", "heun"]) == 2
    assert "drawn with other options (pair_sampler: drawn with unipc vs now heun)" in capsys.readouterr().err
    capsys.readouterr()
    for bad in ("ddpm", "ddim_fewstep"):
        with pytest.raises(SystemExit) as e:
            main(args[:3] + [str(tmp_path / bad)] + args[4:] + ["--pair-sampler", bad])
        assert e.value.code == 2
