"""Every bad input gets one clear error of a known type: configs, files, checkpoints, tensors, training.

`python tests/test_bad_inputs.py` prints the table of docs/reliability.md from the same cases.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from torchdiffusion.build import build_model
from torchdiffusion.cli import main
from torchdiffusion.config import ConfigError, ModelConfig, ProcessConfig, RunConfig, from_dict, load_config, validate
from torchdiffusion.data import DatasetNotFoundError, load_fashion_mnist
from torchdiffusion.generate import generate
from torchdiffusion.likelihood import ode_log_likelihood, vdm_elbo
from torchdiffusion.losses import diffusion_loss
from torchdiffusion.sampling import sample
from torchdiffusion.train.checkpoint import (CheckpointError, list_checkpoints, load_checkpoint, load_weights,
                                             resolve_checkpoint)
from torchdiffusion.train.trainer import Trainer, TrainingDivergedError
from torchdiffusion.likelihood.vlb import full_vlb_bpd
from torchdiffusion.data.image_files import read_image, read_mask
from torchdiffusion.inverse import Blur, motion_kernel, operator_from_spec, mask_preset, sdedit, solve, Mask

sys.path.insert(0, str(Path(__file__).parent))
from test_train_cli import TINY  # noqa: E402

MLP = {"model": {"backbone": "mlp", "prediction": "eps", "params": {"dim": 2, "hidden": 16, "depth": 1, "emb_dim": 8}},
       "data": {"name": "toy:moons", "options": {"n": 64}}, "process": {"name": "vp"},
       "train": {"batch_size": 8, "ckpt_every": 2, "log_every": 1, "sample_every": 0, "warmup_steps": 1}}


def cfg(*overrides: str, base: dict | None = None) -> RunConfig:
    data = json.loads(json.dumps(base or TINY))
    return load_config(None, [f"{k}={json.dumps(v)}" for k, v in _flatten(data)] + list(overrides))


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict) and v and k not in ("params", "options"):
            out += _flatten(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", v))
    return out


def tiny_mlp():
    torch.manual_seed(0)
    m, _ = build_model(ModelConfig(backbone="mlp", params={"dim": 2, "hidden": 8, "depth": 1, "emb_dim": 8}),
                       ProcessConfig(name="vp"))
    return m


def trained_run(tmp: Path, steps: int = 2) -> Path:
    run = tmp / "run"
    Trainer(cfg(base=MLP), run, progress=False, quiet=True).run(max_steps=steps)
    return run


def _write(tmp: Path, name: str, data: bytes) -> Path:
    p = tmp / name
    p.write_bytes(data)
    return p


def _truncated(tmp: Path) -> Path:
    c = list_checkpoints(trained_run(tmp))[-1]
    c.write_bytes(c.read_bytes()[: c.stat().st_size // 2])
    return c


def _flipped(tmp: Path) -> Path:
    c = list_checkpoints(trained_run(tmp))[-1]
    b = bytearray(c.read_bytes())
    b[-5] ^= 0x01
    c.write_bytes(bytes(b))
    return c


def _future_format(tmp: Path) -> Path:
    c = list_checkpoints(trained_run(tmp))[-1]
    tensors, meta = load_checkpoint(c)
    meta["format_version"] = 99
    save_file(tensors, str(c), metadata={"torchdiffusion": json.dumps(meta)})
    return c


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def _pickled_code(tmp: Path) -> Path:
    p = tmp / "evil.pt"
    torch.save({"w": Evil()}, p)
    return p


def _resume_other_config(tmp: Path) -> None:
    run = trained_run(tmp)
    Trainer(cfg("model.params.hidden=32", base=MLP), run, progress=False, quiet=True)


def _nan_run(tmp: Path, policy: str) -> None:
    t = Trainer(cfg(f"train.nan_policy={policy}", base=MLP), tmp / "nan", progress=False, quiet=True)
    t.run(max_steps=2)
    real = t.loss
    t.loss = lambda x0, labels, mine=slice(None), **c: real(x0, labels, mine, **c) * float("nan")
    t.run(max_steps=20)


def _labelled():
    m, _ = build_model(ModelConfig(backbone="mlp", params={"dim": 2, "hidden": 8, "depth": 1, "emb_dim": 8,
                                                           "num_classes": 10}), ProcessConfig(name="vp"))
    return m


def _ddpm_mlp():
    m, _ = build_model(ModelConfig(backbone="mlp", params={"dim": 2, "hidden": 8, "depth": 1, "emb_dim": 8}),
                       ProcessConfig(name="ddpm", T=4))
    return m


def _sigma(v: Any) -> Callable[[], Any]:
    return lambda: tiny_mlp()(torch.zeros(2, 2), v)


# (input tried, how to try it, the error type, a regex its message must match)
CASES: list[tuple[str, Callable[..., Any], type[BaseException], str]] = [
    ("unknown key `train.lrr`", lambda: cfg("train.lrr=1"), ConfigError, r"'train\.lrr'.*allowed keys.*\blr\b"),
    ("unknown section `trian`", lambda: cfg("trian.lr=1"), ConfigError, r"'trian'.*allowed keys.*train"),
    ("`train: 5` (not a mapping)", lambda: from_dict(RunConfig, {"train": 5}), ConfigError, r"train: expected a mapping"),
    ("`train.batch_size=abc`", lambda: cfg("train.batch_size=abc"), ConfigError, r"train\.batch_size: expected an integer"),
    ("`train.max_steps=true`", lambda: cfg("train.max_steps=true"), ConfigError, r"train\.max_steps: expected an integer"),
    ("`process.schedule=cosin`", lambda: cfg("process.schedule=cosin"), ConfigError, r"process\.schedule: 'cosin' is not one of .*cosine"),
    ("`model.prediction=epsilon`", lambda: cfg("model.prediction=epsilon"), ConfigError, r"model\.prediction: 'epsilon' is not one of .*eps"),
    ("`model.backbone=resnet`", lambda: cfg("model.backbone=resnet"), ConfigError, r"model\.backbone: 'resnet' is not one of .*unet"),
    ("`train.lr=-1`", lambda: cfg("train.lr=-1"), ConfigError, r"train\.lr: must be a finite number > 0, got -1"),
    ("`train.lr=.nan`", lambda: cfg("train.lr=.nan"), ConfigError, r"train\.lr: must be a finite number > 0, got nan"),
    ("`train.log_every=0`", lambda: cfg("train.log_every=0"), ConfigError, r"train\.log_every: must be .* >= 1, got 0"),
    ("`train.grad_clip=-1`", lambda: cfg("train.grad_clip=-1"), ConfigError, r"train\.grad_clip: must be .* >= 0"),
    ("`train.ema_decay=1.0`", lambda: cfg("train.ema_decay=1.0"), ConfigError, r"train\.ema_decay: must be in \[0, 1\)"),
    ("batch 10 with accumulate 3", lambda: cfg("train.batch_size=10", "train.accumulate=3"), ConfigError, r"divisible"),
    ("`train.nan_policy=ignore`", lambda: cfg("train.nan_policy=ignore"), ConfigError, r"train\.nan_policy: 'ignore' is not one of skip, stop"),
    ("`train.parallel=zero`", lambda: cfg("train.parallel=zero"), ConfigError, r"train\.parallel: 'zero' is not one of ddp, fsdp"),
    ("`sample.sampler=magic`", lambda: cfg("sample.sampler=magic"), ConfigError, r"sample\.sampler: 'magic' is not one of .*ddim"),
    ("`data.name=cifar`", lambda: cfg("data.name=cifar"), ConfigError, r"data\.name: 'cifar' is not one of .*mnist"),
    ("`process.sigma_min=100` (> sigma_max)", lambda: cfg("process.sigma_min=100"), ConfigError, r"process\.sigma_min .* must be < process\.sigma_max"),
    ("`loss.kind=hybrid` with `process.name=vp`", lambda: cfg("loss.kind=hybrid", "process.name=vp"), ConfigError, r"hybrid.*ddpm"),
    ("`model.params.widht=3` (backbone key)", lambda: cfg("model.params.widht=3"), ConfigError, r"'model\.params\.widht'.*allowed keys.*base_channels"),
    ("`model.params.base_channels=abc`", lambda: cfg("model.params.base_channels=abc"), ConfigError, r"model\.params\.base_channels: expected an integer"),
    ("`model.params.channel_mult=[1, a]`", lambda: cfg("model.params.channel_mult=[1, a]"), ConfigError, r"model\.params\.channel_mult\[1\]: expected an integer"),
    ("`model.params.num_heads=3` (does not divide widths)", lambda: cfg("model.params.num_heads=3"), ConfigError, r"model\.params \(unet\): num_heads=3 must divide"),
    ("`--set train.lr` (no `=`)", lambda: load_config(None, ["train.lr"]), ConfigError, r"--set expects key=value"),
    ("config file `no_such.yaml`", lambda: load_config("no_such.yaml"), ConfigError, r"not found \(packaged configs: .*mnist"),
    ("config file with invalid YAML", lambda tmp: load_config(_write(tmp, "bad.yaml", b"train: [1,")), ConfigError, r"not valid YAML"),
    ("`data.options={nn: 5}` (loader keyword)", lambda tmp: Trainer(cfg("data.options={nn: 5}", base=MLP), tmp, quiet=True), ConfigError, r"data\.options .* do not fit dataset 'toy:moons'"),
    ("missing Fashion-MNIST files", lambda tmp: load_fashion_mnist(root=tmp / "none"), DatasetNotFoundError, r"Fashion-MNIST"),
    ("checkpoint path that does not exist", lambda tmp: load_checkpoint(tmp / "nope.safetensors"), CheckpointError, r"does not exist"),
    ("run directory without checkpoints", lambda tmp: resolve_checkpoint(tmp), CheckpointError, r"run directory .* has no checkpoints"),
    ("truncated checkpoint", lambda tmp: load_checkpoint(_truncated(tmp)), CheckpointError, r"truncated or not a safetensors file"),
    ("checkpoint with one flipped byte", lambda tmp: load_checkpoint(_flipped(tmp)), CheckpointError, r"hash mismatch|truncated"),
    ("checkpoint of a future format", lambda tmp: load_checkpoint(_future_format(tmp)), CheckpointError, r"format 99 is not supported"),
    ("foreign safetensors (no metadata)", lambda tmp: load_checkpoint(_foreign(tmp)), CheckpointError, r"not a torchdiffusion checkpoint"),
    ("random bytes as a checkpoint", lambda tmp: load_checkpoint(_write(tmp, "x.safetensors", b"\x00" * 100)), CheckpointError, r"truncated or not a safetensors"),
    ("torch.save file with pickled code", lambda tmp: load_weights(_pickled_code(tmp)), CheckpointError, r"refused to load.*GLOBAL"),
    ("random bytes as foreign weights", lambda tmp: load_weights(_write(tmp, "w.bin", b"hello" * 20)), CheckpointError, r"neither a safetensors file nor a readable torch\.save"),
    ("resume with a different `model.params`", _resume_other_config, CheckpointError, r"different config; cannot resume:\n  model:"),
    ("NaN loss, `train.nan_policy=stop`", lambda tmp: _nan_run(tmp, "stop"), TrainingDivergedError, r"non-finite loss nan at step 3 .*last good checkpoint is .*ckpt-00000002"),
    ("NaN loss 10 steps in a row, `skip`", lambda tmp: _nan_run(tmp, "skip"), TrainingDivergedError, r"10 steps in a row, the last at step 3"),
    ("denoiser x of dtype int64", lambda: tiny_mlp()(torch.zeros(2, 2, dtype=torch.long), 1.0), ValueError, r"x must be a non-empty floating-point tensor"),
    ("denoiser x of dtype float64 (model float32)", lambda: tiny_mlp()(torch.zeros(2, 2, dtype=torch.float64), 1.0), ValueError, r"model's weights are torch\.float32"),
    ("denoiser x on another device (meta) than the model (cpu)", lambda: tiny_mlp()(torch.zeros(2, 2, device="meta"), 1.0), ValueError, r"x is on meta but the model is on cpu"),
    ("ODE likelihood of x with a NaN", lambda: ode_log_likelihood(tiny_mlp(), torch.tensor([[0.0, float("nan")]]), sigma_min=0.01, sigma_max=10.0), ValueError, r"x has NaN or infinite entries"),
    ("variational bound (bpd) of x0 on [0, 255]", lambda: full_vlb_bpd(_ddpm_mlp(), torch.full((2, 2), 255.0)), ValueError, r"x0 must lie in \[-1, 1\] .* got values in \[255, 255\]"),
    ("VDM bound with the discretized decoder of x0 outside [-1, 1]", lambda: vdm_elbo(tiny_mlp(), torch.full((2, 2), 2.0), sigma_min=0.01, sigma_max=10.0), ValueError, r"x0 must lie in \[-1, 1\]"),
    ("denoiser x without a batch dim", lambda: tiny_mlp()(torch.zeros(2), 1.0), ValueError, r"at least 2 dims"),
    ("denoiser x of shape (2, 3) for an MLP of dim 2", lambda: tiny_mlp()(torch.zeros(2, 3), 1.0), ValueError, r"MLP takes x of shape \(B, dim\) with 2 at dim 1, got float32 tensor of shape \(2, 3\)"),
    ("class label 11 with 10 classes", lambda: _labelled()(torch.zeros(2, 2), 1.0, class_labels=torch.tensor([0, 11])), ValueError, r"class_labels must be in \[0, 10\]"),
    ("float class labels", lambda: _labelled()(torch.zeros(2, 2), 1.0, class_labels=torch.zeros(2)), ValueError, r"class_labels must be an integer tensor of shape \(2,\)"),
    ("denoiser sigma of shape (3,) for batch 2", _sigma(torch.ones(3)), ValueError, r"sigma must be a scalar or of shape \(2,\)"),
    ("denoiser sigma = NaN", _sigma(float("nan")), ValueError, r"sigma must be finite and >= 0"),
    ("denoiser sigma = -1", _sigma(-1.0), ValueError, r"sigma must be finite and >= 0"),
    ("generate shape (0, 2)", lambda: generate(tiny_mlp(), (0, 2), 4), ValueError, r"shape must be a non-empty tuple of positive ints"),
    ("generate num = 0", lambda: generate(tiny_mlp(), (2,), 0), ValueError, r"num must be a positive integer"),
    ("generate cond with 3 rows for num 4", lambda: generate(tiny_mlp(), (2,), 4, cond={"class_labels": torch.zeros(3)}), ValueError, r"cond\['class_labels'\] has 3 rows but num = 4"),
    ("generate sampler `magic`", lambda: generate(tiny_mlp(), (2,), 4, sampler="magic"), ValueError, r"unknown sampler 'magic'"),
    ("sample() x as a list", lambda: sample(tiny_mlp(), [[0.0, 0.0]]), ValueError, r"x must be a floating-point tensor"),
    ("sample() nfe = 0", lambda: sample(tiny_mlp(), torch.zeros(2, 2), nfe=0), ValueError, r"nfe must be >= 1"),
    ("loss x0 without a batch dim", lambda: diffusion_loss(tiny_mlp(), torch.zeros(2)), ValueError, r"x0 must be .* at least 2 dims"),
    ("loss t of shape (3,) for batch 2", lambda: diffusion_loss(tiny_mlp(), torch.zeros(2, 2), t=torch.ones(3)), ValueError, r"t must be a tensor of shape \(2,\)"),
    ("loss eps of another shape", lambda: diffusion_loss(tiny_mlp(), torch.zeros(2, 2), eps=torch.zeros(2, 3)), ValueError, r"eps must be a tensor of shape \(2, 2\)"),
    ("image file that does not exist (`inpaint --image`)", lambda tmp: read_image(tmp / "nope.png", (1, 8, 8)), ValueError, r"image .*nope\.png does not exist"),
    ("text file as an image", lambda tmp: read_image(_write(tmp, "notes.png", b"hello"), (1, 8, 8)), ValueError, r"not an image file Pillow can read"),
    ("5x5 mask for an 8x8 model (`inpaint --mask`)", lambda tmp: read_mask(_png(tmp, 5), (1, 8, 8)), ValueError, r"mask .* is 5x5 \(HxW\) but the model takes 8x8 images; resize it first, or ask for resizing"),
    ("image for a model of 2-D points", lambda tmp: read_image(_png(tmp, 8), (2,)), ValueError, r"images in and out need a model of images \(C, H, W\)"),
    ("mask preset `circle`", lambda: mask_preset("circle", (1, 8, 8)), ValueError, r"unknown mask preset 'circle'; choose one of centre, half"),
    ("operator `sharpen:2` (`restore --operator`)", lambda: operator_from_spec("sharpen:2", (1, 8, 8)), ValueError, r"unknown operator 'sharpen:2'; give one of: blur:STD"),
    ("operator `downsample:3` on 8x8 images", lambda: operator_from_spec("downsample:3", (1, 8, 8)), ValueError, r"not a multiple of 3"),
    ("operator `blur:2:4` (even kernel size)", lambda: operator_from_spec("blur:2:4", (1, 8, 8)), ValueError, r"odd whole number"),
    ("SDEdit strength 1.5 (`img2img --strength`)", lambda: sdedit(_gmm2(), torch.zeros(2, 2, dtype=torch.float64), 1.5), ValueError, r"strength must lie in \[0, 1\], got 1\.5"),
    ("solve with 2 generators for 3 rows", lambda: solve(_gmm2(), torch.zeros(3, 2, dtype=torch.float64), Mask(torch.ones(2)), noise_std=0.0, method="ddrm", generator=[torch.Generator()] * 2), ValueError, r"one torch\.Generator or one per row of y \(3\), got 2"),
    ("non-separable blur of 3x64x64 images (dense SVD too large)", lambda: Blur(motion_kernel(5, 30.0)).svd((3, 64, 64)), ValueError, r"Blur has no structured SVD and a dense one .* too large"),
]


def _png(tmp: Path, size: int) -> Path:
    from PIL import Image

    p = tmp / f"grey{size}.png"
    Image.new("L", (size, size), 255).save(p)
    return p


def _gmm2():
    from torchdiffusion.analytic import GaussianMixture

    return GaussianMixture(torch.ones(2), torch.tensor([[-1.0, 0.0], [1.0, 0.5]], dtype=torch.float64), 0.1)


def _foreign(tmp: Path) -> Path:
    p = tmp / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(p))
    return p


def run_case(fn: Callable[..., Any], tmp: Path) -> Any:
    return fn(tmp) if fn.__code__.co_argcount else fn()


@pytest.mark.parametrize("what,fn,error,pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_a_clear_error(what, fn, error, pattern, tmp_path):
    with pytest.raises(error) as info:
        run_case(fn, tmp_path)
    msg = str(info.value)
    assert re.search(pattern, msg, re.S), msg
    assert "Traceback" not in msg


@pytest.mark.parametrize("argv", [["train", "no_such_config"], ["train", "digits", "--set", "train.lr=-1"],
                                  ["sample", "/nonexistent/run"]])
def test_cli_prints_one_message_and_exits_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("torchdiffusion ") and "error:" in err and "Traceback" not in err and err.count("\n") <= 4


def test_cli_reports_a_truncated_checkpoint_without_a_traceback(tmp_path, capsys):
    c = _truncated(tmp_path)
    assert main(["sample", str(c), "--num", "1", "--steps", "1"]) == 2
    assert "truncated" in capsys.readouterr().err


# ---- fuzzing: random configs and tensors get a ConfigError / ValueError or work, never anything else

SECTIONS = {f.name: f.type for f in __import__("dataclasses").fields(RunConfig)}
LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                   st.text(max_size=6), st.lists(st.integers(-2, 5), max_size=3))
KEYS = st.sampled_from(["lr", "batch_size", "accumulate", "name", "schedule", "T", "prediction", "kind", "weighting",
                        "ema_decay", "steps", "sampler", "limit", "nan_policy", "parallel", "params", "options",
                        "base_channels", "channel_mult", "num_heads", "dim", "hidden", "bogus"])
SECTION_KEYS = st.sampled_from(["data", "process", "model", "loss", "train", "sample", "extra"])
CONFIGS = st.dictionaries(SECTION_KEYS, st.dictionaries(KEYS, st.one_of(LEAVES, st.dictionaries(KEYS, LEAVES,
                                                                                                 max_size=3)),
                                                        max_size=4), max_size=4)
SEEN: dict[str, dict[str, int]] = {}


def _note(kind: str, e: BaseException) -> None:
    """Count outcomes by message template (key path, numbers and quoted values blanked) for the docs summary."""
    text = "accepted" if str(e) == "accepted" else f"{type(e).__name__}: {str(e)}"
    text = re.sub(r"^(\w+: )(?:unknown config key )?'?[\w.\[\]]+'?(?: \(\w+\))?[:;]", r"\1<key>:", text)
    text = re.sub(r"'[^']*'|-?\d[\d.e+-]*|nan|inf|\[[^\]]*\]|\{[^}]*\}|\([^)]*\)|True|False|None", "_", text)
    text = re.sub(r"(got|tensor of) .*", r"\1 …", text)[:80]
    counts = SEEN.setdefault(kind, {})
    counts[text] = counts.get(text, 0) + 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CONFIGS)
def test_fuzzed_configs_load_or_raise_config_error(data):
    try:
        c = from_dict(RunConfig, data)
        validate(c)
    except ConfigError as e:
        _note("config", e)
        return
    _note("config", ValueError("accepted"))
    assert c.train.lr > 0 and math.isfinite(c.train.lr) and c.train.batch_size % c.train.accumulate == 0


def _leaf_paths(cls: type, prefix: str = "") -> list[str]:
    import dataclasses
    out = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(f.default_factory) if f.default_factory is not dataclasses.MISSING else False:
            out += _leaf_paths(f.default_factory, f"{prefix}{f.name}.")
        else:
            out.append(f"{prefix}{f.name}")
    return out


LEAF_PATHS = _leaf_paths(RunConfig) + ["model.params.base_channels", "model.params.channel_mult",
                                       "model.params.num_heads", "model.params.dropout", "data.options.n"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(LEAF_PATHS), LEAVES), min_size=1, max_size=3))
def test_fuzzed_values_at_known_keys_load_or_raise_config_error(items):
    data = json.loads(json.dumps(TINY))
    try:
        for path, value in items:
            from torchdiffusion.config import set_path
            set_path(data, path, value)
        c = from_dict(RunConfig, data)
        validate(c)
    except ConfigError as e:
        _note("config values", e)
        return
    _note("config values", ValueError("accepted"))
    build_model(c.model, c.process) if c.model.params.get("base_channels", 8) <= 64 else None


DTYPES = st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int64, torch.bool])
SHAPES = st.lists(st.integers(0, 3), min_size=0, max_size=3).map(tuple)
SIGMAS = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                   st.tuples(SHAPES, st.floats(-1, 100)).map(lambda s: torch.full(s[0], s[1])))


@settings(max_examples=300, deadline=None)
@given(shape=SHAPES, dtype=DTYPES, sigma=SIGMAS)
def test_fuzzed_tensors_at_the_denoiser_raise_value_error_or_work(shape, dtype, sigma):
    model = FUZZ_MODEL
    x = torch.zeros((*shape, 2) if shape else (2,), dtype=dtype)
    try:
        out = model(x, sigma)
    except ValueError as e:
        _note("denoiser", e)
        return
    _note("denoiser", ValueError("accepted"))
    assert out.shape == x.shape and bool(torch.isfinite(out).all())


@settings(max_examples=150, deadline=None)
@given(shape=SHAPES, dtype=DTYPES, t_shape=SHAPES, eps_shape=st.one_of(st.none(), SHAPES))
def test_fuzzed_tensors_at_the_loss_raise_value_error_or_work(shape, dtype, t_shape, eps_shape):
    x0 = torch.zeros((*shape, 2) if shape else (2,), dtype=dtype)
    t = torch.rand(t_shape, dtype=torch.float64)
    eps = None if eps_shape is None else torch.zeros(eps_shape)
    try:
        out = diffusion_loss(FUZZ_MODEL, x0, t=t, eps=eps)
    except ValueError as e:
        _note("loss", e)
        return
    _note("loss", ValueError("accepted"))
    assert out.shape == (x0.shape[0],)


FUZZ_MODEL = tiny_mlp()


def markdown_table(tmp: Path) -> str:
    """The docs table: each case with the error it gets (the first line of its message)."""
    rows = ["| Input tried | Error | Message (first line, paths shortened) |", "|---|---|---|"]
    for i, (what, fn, error, _) in enumerate(CASES):
        d = tmp / f"case{i}"
        d.mkdir()
        try:
            run_case(fn, d)
            got, msg = "(none)", ""
        except BaseException as e:  # noqa: BLE001 - recording what happened
            got, msg = type(e).__name__, str(e).replace(str(d), "RUN").strip().splitlines()[0]
        msg = msg.replace("|", "\\|")
        rows.append(f"| {what} | `{got}` | {msg[:160] + ('…' if len(msg) > 160 else '')} |")
    return "\n".join(rows)


if __name__ == "__main__":
    import tempfile

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        print(markdown_table(Path(tmp)))
    for test in (test_fuzzed_configs_load_or_raise_config_error, test_fuzzed_values_at_known_keys_load_or_raise_config_error,
                 test_fuzzed_tensors_at_the_denoiser_raise_value_error_or_work,
                 test_fuzzed_tensors_at_the_loss_raise_value_error_or_work):
        test()
    for kind, counts in SEEN.items():
        print(f"\n{kind}: {sum(counts.values())} examples")
        for text, n in sorted(counts.items(), key=lambda kv: -kv[1]):
            print(f"- {n:4d} × {text}")
