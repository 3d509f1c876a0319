"""`torchdiffusion eval` and `train-features` end to end on a tiny digits run: every requested figure is in
report.json and finite, NFE used stays within the request, the plots are PNGs; bad input gets a clear error."""

import json
import math

import pytest
import yaml

from torchdiffusion.cli import main

TINY = {
    "data": {"name": "digits", "limit": 64},
    "process": {"name": "ddpm", "schedule": "cosine", "T": 50},
    "model": {"backbone": "unet", "prediction": "v",
              "params": {"in_channels": 1, "image_size": 8, "base_channels": 8, "channel_mult": [1, 2],
                         "num_res_blocks": 1, "attn_resolutions": [4], "num_heads": 2}},
    "train": {"batch_size": 8, "accumulate": 1, "lr": 1e-3, "warmup_steps": 2, "ckpt_every": 100, "log_every": 1,
              "sample_every": 0},
    "sample": {"sampler": "ddim", "steps": 3, "num": 4},
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("eval")
    cfg = d / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    assert main(["train", str(cfg), "--max-steps", "3", "--out", str(d / "run"), "--no-progress"]) == 0
    return d


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """Feature networks go to a temporary cache, never the user's."""
    monkeypatch.setenv("TORCHDIFFUSION_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def finite(v):
    return v is not None and math.isfinite(v)


def test_train_features_then_eval_reports_every_figure(tiny_run, cache, tmp_path, capsys):
    feats = tmp_path / "digits-features.safetensors"
    assert main(["train-features", "digits", "--epochs", "1", "--out", str(feats)]) == 0
    tf = last_json(capsys)
    assert tf["path"] == str(feats) and feats.is_file() and 0.1 < tf["test_accuracy"] <= 1
    assert tf["test_size"] + tf["train_size"] == 1797

    out = tmp_path / "eval"
    argv = ["eval", str(tiny_run / "run"), "--num", "32", "--samplers", "ddim,dpmpp_2m", "--nfe", "2,4",
            "--metrics", "fid,kid,pr,is,bpd", "--features", str(feats), "--bpd-num", "2", "--elbo-steps", "5",
            "--ode-tol", "1e-2", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    summary = last_json(capsys)
    report = json.loads((out / "report.json").read_text())
    assert summary["report"] == str(out / "report.json")
    assert report["command"].startswith("torchdiffusion eval ") and "--nfe 2,4" in report["command"]
    assert "held out" in report["reference"]["source"] and report["features"]["path"] == str(feats)

    rows = report["results"]
    assert [(r["sampler"], r["nfe_requested"]) for r in rows] == [("ddim", 2), ("ddim", 4), ("dpmpp_2m", 2),
                                                                  ("dpmpp_2m", 4)]
    for r in rows:
        assert 1 <= r["nfe_used"] <= r["nfe_requested"]
        assert finite(r["fid"]) and r["fid"] >= 0
        assert all(finite(r["kid"][k]) for k in ("mean", "std", "se"))
        assert 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1
        assert 1 - 1e-9 <= r["is"]["mean"] <= 10 and finite(r["is"]["std"])
        assert r["sample_seconds"] >= 0 and r["metric_seconds"] >= 0
    for kind in ("elbo", "ode"):
        b = report["bpd"][kind]
        assert finite(b["bpd"]) and b["bpd"] > 0 and b["num"] == 2 and b["seconds"] >= 0
    assert "stratified DDPM" in report["bpd"]["elbo"]["method"]
    assert report["seconds"]["total"] > 0

    names = {p.split("/")[-1] for p in report["plots"]}
    assert {"fid_vs_nfe.png", "kid_vs_nfe.png", "precision_vs_nfe.png", "recall_vs_nfe.png", "is_vs_nfe.png",
            "training_loss.png"} <= names
    for p in report["plots"]:
        data = open(p, "rb").read()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
    assert not cache.exists()  # a feature file was given: nothing trained into the cache


def test_eval_toy_run_uses_distances(tmp_path, cache, capsys):
    cfg = tmp_path / "toy.yaml"
    cfg.write_text(yaml.safe_dump({
        "data": {"name": "toy:moons", "options": {"n": 512}}, "process": {"name": "vp"},
        "model": {"backbone": "mlp", "prediction": "eps", "params": {"dim": 2, "hidden": 32, "depth": 2}},
        "train": {"batch_size": 64, "warmup_steps": 1, "ckpt_every": 100, "log_every": 1, "sample_every": 0},
        "sample": {"sampler": "ddim", "steps": 3, "num": 8}}))
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--max-steps", "2", "--out", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--num", "64", "--samplers", "euler,heun", "--nfe", "3,5", "--bpd-num", "4",
                 "--elbo-steps", "4", "--ode-tol", "1e-3", "--no-plots", "--no-progress"]) == 0
    report = json.loads((run / "eval" / "report.json").read_text())
    assert report["data_kind"] == "toy2d" and report["metrics"] == ["swd", "mmd", "bpd"]
    for r in report["results"]:
        assert r["nfe_used"] <= r["nfe_requested"] and finite(r["swd"]) and finite(r["mmd"])
    # Heun spends its budget up to one step (2 calls; a long step costs 1, `sampling.common.first_order`)
    heun = {r["nfe_requested"]: r["nfe_used"] for r in report["results"] if r["sampler"] == "heun"}
    assert set(heun) == {3, 5} and all(n - 2 < used <= n for n, used in heun.items()), heun
    assert finite(report["bpd"]["ode"]["bpd"]) and finite(report["bpd"]["elbo"]["bpd"])
    assert "exact trace" in report["bpd"]["ode"]["method"] and report["plots"] == []


@pytest.mark.parametrize("args, message", [
    (["--samplers", "ddim,nope"], "dpmpp_2m"),          # lists the allowed samplers
    (["--metrics", "fid,fud"], "fid, kid, pr, is, bpd"),  # lists the allowed metrics
    (["--metrics", "swd"], "fid, kid, pr, is, bpd"),      # a toy metric on an image run
    (["--num", "1"], "--num must be >= 2"),
    (["--nfe", "2,x"], "--nfe"),
    (["--nfe", "0"], ">= 1"),
])
def test_eval_rejects_bad_names_and_sizes(tiny_run, cache, tmp_path, capsys, args, message):
    argv = ["eval", str(tiny_run / "run"), "--out", str(tmp_path / "e"), "--no-plots", *args]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "e" / "report.json").exists()


def test_eval_of_a_run_without_checkpoints_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["eval", str(tmp_path / "empty"), "--no-plots"]) == 2
    assert "no checkpoints" in capsys.readouterr().err


def test_train_features_refuses_a_toy_dataset(cache, capsys):
    assert main(["train-features", "toy:moons"]) == 2
    assert "image datasets" in capsys.readouterr().err
