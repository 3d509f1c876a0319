"""sample.guidance_scale and sample.guidance_mode of a class-conditional token run: validated with the config (bad
value, unconditional run, Gaussian run -> ConfigError, exit 2 from the CLI), and used by `sample` when the flags are
not given (the flags still win)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from torchdiffusion.cli import main
from torchdiffusion.config import ConfigError, load_config
from torchdiffusion.train.trainer import train

from test_discrete_images import TINY, needs_fashion


def test_the_packaged_token_configs_leave_guidance_at_the_conditional_model():
    for name, mode in (("fashion_mnist_d3pm", "x0"), ("kjv_mdlm", None)):
        cfg = load_config(name)
        assert cfg.sample.guidance_scale == 1.0 and cfg.sample.guidance_mode == mode
    cfg = load_config("fashion_mnist_d3pm", ["sample.guidance_mode=transition", "sample.guidance_scale=2.5"])
    assert cfg.sample.guidance_mode == "transition" and cfg.sample.guidance_scale == 2.5


@pytest.mark.parametrize("name, overrides, message", [
    ("fashion_mnist_d3pm", ["sample.guidance_mode=x_s"], "sample.guidance_mode: 'x_s' is not one of x0, transition"),
    ("fashion_mnist_d3pm", ["sample.guidance_scale=.inf"], "sample.guidance_scale: must be a finite number"),
    ("fashion_mnist_d3pm", ["sample.guidance_scale=.nan"], "sample.guidance_scale: must be a finite number"),
    ("kjv_mdlm", ["sample.guidance_mode=x0"], "sample.guidance_mode: .*needs a class-conditional diffusion model"),
    ("kjv_ar", ["sample.guidance_scale=2"], "sample.guidance_scale: .*needs a class-conditional"),
    ("fashion_mnist_cond", ["sample.guidance_mode=transition"], "sample.guidance_mode: a key of class-conditional "
                                                                "token runs.*is Gaussian"),
    ("fashion_mnist_cond", ["sample.guidance_scale=3"], "sample.guidance_scale: .*pass --guidance-scale"),
])
def test_bad_guidance_keys_are_refused_with_the_key_named(name, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(name, overrides)


def test_train_refuses_a_bad_guidance_mode_with_exit_2(tmp_path, capsys):
    try:
        status = main(["train", "fashion_mnist_d3pm", "--set", "sample.guidance_mode=bogus", "--out",
                       str(tmp_path / "run")])
    except SystemExit as e:
        status = e.code
    err = capsys.readouterr().err
    assert status == 2 and "sample.guidance_mode" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def transition_run(tmp_path_factory):
    """A tiny fashion_mnist_d3pm run whose config asks for transition guidance at scale 2."""
    from test_discrete_images import HAVE_FASHION

    if not HAVE_FASHION:
        pytest.skip("dataset-fashion-mnist not installed (make data)")
    out = tmp_path_factory.mktemp("fm_d3pm_transition") / "run"
    cfg = load_config("fashion_mnist_d3pm", TINY + ["sample.guidance_mode=transition", "sample.guidance_scale=2"])
    train(cfg, out, max_steps=2, progress=False, device="cpu")
    return out


def sample_png(run, png, capsys, *flags) -> tuple[dict, np.ndarray]:
    assert main(["sample", str(run), "--num", "4", "--steps", "3", "--class-label", "1", "--tiles", str(png),
                 *flags]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1]), np.asarray(Image.open(png))


@needs_fashion
def test_sample_uses_the_runs_guidance_keys_when_the_flags_are_absent(transition_run, tmp_path, capsys):
    summary, keyed = sample_png(transition_run, tmp_path / "keys.png", capsys)
    assert summary["guidance_mode"] == "transition" and summary["guidance_scale"] == 2.0
    _, flagged = sample_png(transition_run, tmp_path / "flags.png", capsys, "--guidance-scale", "2",
                            "--guidance-mode", "transition")
    assert np.array_equal(keyed, flagged)  # the same seeds, the same guided sampler: the same pixels
    # the flags win over the keys; scale 1 is the conditional model, whatever the mode
    summary, _ = sample_png(transition_run, tmp_path / "plain.png", capsys, "--guidance-scale", "1",
                                "--guidance-mode", "x0")
    assert summary["guidance_mode"] == "x0" and summary["guidance_scale"] == 1.0
    summary, _ = sample_png(transition_run, tmp_path / "x0.png", capsys, "--guidance-mode", "x0")
    assert summary["guidance_mode"] == "x0" and summary["guidance_scale"] == 2.0
