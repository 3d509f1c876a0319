"""The command line's promise: a user's bad input ends in one paragraph on stderr and exit status 2, never a
traceback, an unbounded allocation or a file written; only a bug says it is one (exit 70)."""

import os
import string

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torchdiffusion.cli import main
from torchdiffusion.config import ConfigError, load_config

from test_train_cli import TINY


@pytest.fixture(scope="module")
def run(tiny_run):
    return tiny_run


def snapshot(root):
    """Every file under root with its size and modification time."""
    return {(p, p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def assert_one_paragraph_exit_2(code, err, command):
    assert code == 2, err
    assert "Traceback" not in err
    text = err.strip()
    assert text.startswith(f"torchdiffusion {command}: error:") or text.startswith("usage:"), text
    assert "\n\n" not in text


def parse_exit(argv):
    try:
        return main(argv)
    except SystemExit as e:  # argparse's usage errors
        return e.code


@pytest.mark.parametrize("argv, needle", [
    (["train", "mnist", "--max-minutes", "0"], "minutes > 0"),
    (["train", "mnist", "--max-minutes", "nan"], "minutes > 0"),
    (["train", "mnist", "--max-cpu-minutes", "-1"], "minutes > 0"),
    (["train", "mnist", "--max-steps", "-3"], "at least 1"),
    (["train", "mnist", "--out", ""], "empty string"),
    (["train", "mnist", "--set", "process.T=1000000"], "TORCHDIFFUSION_NO_LIMITS=1"),
    (["train", "mnist", "--set", "model.params.base_channels=100000"], "parameter count"),
    (["train", "mnist", "--set", "model.params.base_channels=178956972"], "parameter count"),  # sizes overflow
    (["train", "mnist", "--set", "train.lr=1.0e400"], "finite"),
    (["demo", "--minutes", "inf"], "minutes > 0"),
])
def test_bad_arguments_are_refused_before_any_work(argv, needle, capsys, tmp_path):
    os.chdir(tmp_path)  # nothing may be written: the default run directory would be runs/<name> here
    code = parse_exit(argv)
    err = capsys.readouterr().err
    assert_one_paragraph_exit_2(code, err, argv[0])
    assert needle in err and not any(tmp_path.iterdir())


@pytest.mark.parametrize("extra, needle", [
    (["--steps", "0"], "at least 1"), (["--num", "10000000"], "bound"), (["--eta", "nan"], "finite"),
    (["--option", "eta=.nan"], "finite"), (["--option", "etta=1"], "its options are"), (["--seed", "-1"], ">= 0"),
    (["--guidance-scale", "nan"], "finite"),
])
def test_bad_sample_arguments(run, extra, needle, capsys):
    code = parse_exit(["sample", str(run), "--num", "2", "--steps", "2", "--sampler", "ddim", *extra])
    err = capsys.readouterr().err
    assert_one_paragraph_exit_2(code, err, "sample")
    assert needle in err


def test_npz_is_written_exactly_where_asked_and_a_directory_is_refused(run, tmp_path, capsys):
    target = tmp_path / "deep" / "er" / "samples.bin"
    assert main(["sample", str(run), "--num", "2", "--steps", "2", "--npz", str(target)]) == 0
    assert target.is_file() and not (tmp_path / "deep" / "er" / "samples.bin.npz").exists()
    assert np.load(target)["arr_0"].shape == (2, 8, 8, 1)
    capsys.readouterr()
    assert main(["sample", str(run), "--num", "2", "--steps", "2", "--npz", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_an_unwritable_output_fails_before_sampling(run, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root ignores directory permissions)")
        assert main(["sample", str(run), "--num", "2", "--npz", str(locked / "x.npz")]) == 2
        assert "not writable" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)


def test_eval_of_a_loose_checkpoint_reports_beside_it(run, tmp_path, capsys):
    ckpt = sorted((run / "checkpoints").glob("ckpt-*.safetensors"))[-1]
    loose = tmp_path / "models" / ckpt.name
    loose.parent.mkdir()
    loose.write_bytes(ckpt.read_bytes())
    assert main(["eval", str(loose), "--num", "2", "--samplers", "ddim", "--nfe", "2", "--metrics", "bpd",
                 "--bpd-num", "2", "--elbo-steps", "2", "--no-plots", "--no-progress"]) == 0
    assert (tmp_path / "models" / f"eval-{ckpt.stem}" / "report.json").is_file()
    assert not (tmp_path / "eval").exists()


def test_empty_config_and_yaml_alias_bomb_are_refused(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    with pytest.raises(ConfigError, match="is empty"):
        load_config(empty)
    bomb = tmp_path / "bomb.yaml"
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 9):
        prev, cur = string.ascii_lowercase[i - 1], string.ascii_lowercase[i]
        lines.append(f"{cur}: &{cur} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]")
    bomb.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="aliases"):
        load_config(bomb)
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: {lr: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML") as e:
        load_config(broken)
    assert "\n" not in str(e.value)


def test_a_bug_says_it_is_one(monkeypatch, capsys):
    import torchdiffusion.cli as cli

    real = cli.parser

    def with_a_bug():
        ap = real()
        for sub in ap._subparsers._group_actions[0].choices.values():
            sub.set_defaults(handler=lambda a: 1 / 0)
        return ap

    monkeypatch.setattr(cli, "parser", with_a_bug)
    code = cli.main(["train", "mnist"])
    err = capsys.readouterr().err
    assert code == 70 and "ZeroDivisionError" in err and "bug in torchdiffusion" in err


KEYS = ["train.lr", "train.batch_size", "train.max_steps", "train.ema_decay", "process.T", "process.sigma_min",
        "sample.steps", "sample.num", "sample.sampler", "sample.options", "model.params.base_channels",
        "model.params.channel_mult", "data.limit", "loss.gamma", "model.prediction"]
VALUES = st.one_of(st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True),
                   st.text(max_size=12), st.booleans(), st.none(), st.lists(st.integers(-5, 5), max_size=3),
                   st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(KEYS), value=VALUES)
def test_fuzz_train_config_values_keep_the_contract(key, value, tmp_path_factory, capsys):
    out = tmp_path_factory.mktemp("fuzz") / "run"
    cfg = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    code = main(["train", str(cfg), "--set", f"{key}={yaml.safe_dump(value, default_flow_style=True).strip()}",
                 "--max-steps", "1", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    if code != 0:
        assert_one_paragraph_exit_2(code, err, "train")
        assert not out.exists()


ARGS = st.lists(st.sampled_from(["--steps", "--num", "--seed", "--eta", "--batch-size", "--sampler", "--option",
                                 "--guidance-scale", "--class-label", "--threshold"]), min_size=1, max_size=3)
ARG_VALUES = st.one_of(st.integers(-10**9, 10**9).map(str), st.sampled_from(["nan", "inf", "-inf", "", "x", "1e400",
                                                                            "eta=nan", "ddim", "all", "0,1"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flags=ARGS, values=st.lists(ARG_VALUES, min_size=3, max_size=3))
def test_fuzz_sample_arguments_keep_the_contract(flags, values, run, tmp_path_factory, capsys):
    out = tmp_path_factory.mktemp("fuzzs") / "s.npz"
    argv = ["sample", str(run), "--num", "2", "--steps", "2", "--npz", str(out)]
    for flag, value in zip(flags, values):
        argv += [flag, value]
    before = snapshot(run)
    code = parse_exit(argv)
    err = capsys.readouterr().err
    assert snapshot(run) == before
    if code != 0:
        assert_one_paragraph_exit_2(code, err, "sample")
        assert not out.exists()


def test_restart_moves_a_run_with_unreadable_checkpoints_aside(tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "run"
    assert main(["train", str(cfg), "--max-steps", "3", "--out", str(out), "--no-progress"]) == 0
    for f in (out / "checkpoints").glob("ckpt-*.safetensors"):
        f.write_bytes(b"garbage")
    capsys.readouterr()
    assert main(["train", str(cfg), "--max-steps", "3", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "none can be read" in err and "--restart" in err
    assert main(["train", str(cfg), "--max-steps", "2", "--out", str(out), "--no-progress", "--restart"]) == 0
    moved = list(out.glob("restarted-*"))
    assert len(moved) == 1 and any((moved[0] / "checkpoints").glob("ckpt-*.safetensors"))


def test_eval_features_holding_pickled_code_is_one_line_and_never_run(run, tmp_path, capsys):
    import torch

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    evil = tmp_path / "evil.pt"
    torch.save({"w": Evil()}, evil)
    code = main(["eval", str(run), "--features", str(evil), "--num", "2", "--samplers", "ddim", "--nfe", "2",
                 "--metrics", "fid", "--no-plots", "--no-progress", "--out", str(tmp_path / "ev")])
    err = capsys.readouterr().err
    assert_one_paragraph_exit_2(code, err, "eval")
    assert "nothing in it was executed" in err and not (tmp_path / "pwned").exists()


def test_a_checkpoint_whose_saved_config_is_not_a_mapping_is_one_line(run, tmp_path, capsys):
    from torchdiffusion.train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint

    tensors, meta = load_checkpoint(list_checkpoints(run)[-1])
    meta = {k: v for k, v in meta.items() if k not in ("format_version", "content_hash")} | {"config": [1, 2]}
    path = save_checkpoint(tmp_path / f"ckpt-{meta['step']:08d}.safetensors", tensors, meta)
    assert main(["sample", str(path), "--num", "2", "--steps", "2"]) == 2
    assert "saved config" in capsys.readouterr().err
    assert parse_exit(["eval", str(run), "--ode-tol", "1e-300"]) == 2
    assert "[1e-8, 1]" in capsys.readouterr().err
