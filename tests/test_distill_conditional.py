"""`distill` of conditional teachers, one tiny twin per conditioning kind: text (captions embedded once by the text
encoder, as `train` does), latent + text (the student carries the autoencoder and decodes), super-resolution (a
low-resolution input) and ControlNet (a control image on a frozen base). Each is distilled a few steps by every
method, its run directory is sampled through the same CLI flags as the teacher (`sample --prompt`, `upscale
--sr-run`, `sample --control`), and the condition is shown to reach the student: its calls at two conditions
differ (every student starts as its teacher; the reflow pairs are checked to carry each pair's condition)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from test_controlnet import BASE, CONTROL  # its tiny shapes U-Net and ControlNet
from test_latent_text import sets, train_text_ldm  # its tiny autoencoder and text LDM
from test_superres import SR as SR_TWIN
from torchdiffusion.cli import main

METHODS = ["progressive", "consistency", "reflow"]
TINY_TEXT = ["data.options.n=24", "data.options.size=16", "model.params.image_size=16", "model.params.base_channels=8",
             "model.params.channel_mult=[1,2]", "model.params.attn_resolutions=[8]", "model.params.num_heads=2",
             "train.batch_size=4", "train.sample_every=0", "process.T=50", "train.precision=fp32",
             "train.cond_drop=0.3"]
DISTILL = ["--max-steps", "3", "--start-steps", "2", "--levels", "4", "--pairs", "8", "--pair-nfe", "2",
           "--batch-size", "4", "--lr", "3e-3", "--no-progress"]


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def perturb(run, prefixes=("ema.",), std=0.05):
    """Add N(0, std^2) to the weights under prefixes of the run's newest checkpoint, as training would have moved
    them: zero-initialised layers (cross-attention outputs, ControlNet's zero convolutions) then respond."""
    from torchdiffusion.train.checkpoint import read_checkpoint, save_checkpoint

    path, tensors, meta = read_checkpoint(run)
    g = torch.Generator().manual_seed(0)
    for k, v in tensors.items():
        if k.startswith(prefixes) and v.is_floating_point():
            tensors[k] = v + std * torch.randn(v.shape, generator=g, dtype=v.dtype)
    path.unlink()
    save_checkpoint(path, tensors, meta)


def relative_change(a, b) -> float:
    return float((a - b).abs().max() / a.abs().max().clamp_min(1e-12))


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("text") / "teacher"
    assert main(["train", "shapes_text", *sets(TINY_TEXT), "--max-steps", "2", "--out", str(out),
                 "--no-progress"]) == 0
    perturb(out)
    return out


@pytest.fixture(scope="module")
def text_ldm_run(tmp_path_factory):
    ldm = train_text_ldm(tmp_path_factory.mktemp("text_ldm"))
    perturb(ldm)
    return ldm


def prompt_outputs(run, prompts=("a large red circle", "a small blue square")):
    """The loaded run's x0 estimates of one noisy input at each prompt and at the null context."""
    from torchdiffusion.loading import load_run
    from torchdiffusion.text.context import encode_prompts, null_context

    model = load_run(run).model
    g = torch.Generator().manual_seed(0)
    x = torch.randn((1, *model.backbone.config.data_shape), generator=g) * 2
    s = torch.tensor([2.0])
    with torch.no_grad():
        outs = [model(x, s, **encode_prompts([p])) for p in prompts]
        outs.append(model(x, s, **null_context(1)))
    return outs


def assert_prompts_reach(out, method):
    """The student's calls at two prompts, and at a prompt and the null context, differ."""
    a, b, null = prompt_outputs(out)
    assert relative_change(a, b) > 1e-4 and relative_change(a, null) > 1e-4


@pytest.mark.parametrize("method", METHODS)
def test_a_text_conditional_teacher_distils_and_its_student_samples_prompts(text_run, tmp_path, capsys, method):
    out = tmp_path / method
    assert main(["distill", str(text_run), "--method", method, "--out", str(out), *DISTILL]) == 0
    assert last_json(capsys)["step"] == 3
    grids = []
    for prompt in ("a large red circle", "a small blue square"):
        npz = tmp_path / f"{len(grids)}.npz"
        assert main(["sample", str(out), "--prompt", prompt, "--guidance-scale", "2", "--steps", "2", "--num", "2",
                     "--npz", str(npz)]) == 0
        assert last_json(capsys)["nfe"] == 2  # 2 calls (guidance batches its two branches into one)
        grids.append(__import__("numpy").load(npz)["arr_0"])
    assert (grids[0] != grids[1]).any()  # same seeds, two prompts: two different samples
    assert_prompts_reach(out, method)
    if method == "reflow":  # pairs at the conditions of training items; captions re-embedded from the item index
        pairs = load_file(str(out / "reflow_pairs.safetensors"))
        assert set(pairs) == {"z", "x1", "item"} and pairs["item"].shape == (8,)
        assert main(["distill", str(text_run), "--method", method, "--out", str(out), *DISTILL[:1], "4",
                     *DISTILL[2:]]) == 0  # resumed with the kept pairs
        assert last_json(capsys)["step"] == 4


@pytest.mark.parametrize("method", METHODS)
def test_a_latent_text_teacher_gives_a_latent_student_that_decodes(text_ldm_run, tmp_path, capsys, method):
    out = tmp_path / method
    assert main(["distill", str(text_ldm_run), "--method", method, "--out", str(out), *DISTILL]) == 0
    capsys.readouterr()
    npz = tmp_path / "s.npz"
    assert main(["sample", str(out), "--prompt", "a red circle", "--steps", "1", "--num", "2", "--npz",
                 str(npz)]) == 0
    assert last_json(capsys)["nfe"] == 1
    assert __import__("numpy").load(npz)["arr_0"].shape == (2, 64, 64, 3)  # decoded images, not 16x16x4 latents
    assert_prompts_reach(out, method)


def test_distillation_feeds_the_teachers_conditions_dropped_as_train_drops_them(text_run, tmp_path, monkeypatch):
    """The batches the distiller sees: every row has its item's caption states, about cond_drop of them masked."""
    import torchdiffusion.distill.run as run_mod

    seen = {}

    def fit(distiller, draw, *a, start=0, **k):
        seen["x0"], seen["cond"] = draw(400, torch.Generator().manual_seed(0))
        x0, c = draw(2, torch.Generator().manual_seed(1))
        seen["loss"] = distiller.loss(x0, torch.Generator().manual_seed(2), **c)
        return start

    monkeypatch.setattr(run_mod, "fit", fit)
    run_mod.distill(text_run, tmp_path / "cd", run_mod.DistillOptions(method="consistency", max_steps=1, levels=4),
                    progress=False)
    cond = seen["cond"]
    assert set(cond) == {"context", "context_mask"} and cond["context"].shape[:2] == (400, 32)
    dropped = ~cond["context_mask"].any(1)
    assert 0.2 < float(dropped.float().mean()) < 0.4  # train.cond_drop = 0.3 of the tiny twin
    assert seen["loss"].shape == (2,) and bool(torch.isfinite(seen["loss"]).all())


SR = {**SR_TWIN, "train": {**SR_TWIN["train"], "sample_every": 0}}  # test_superres's twin, no sample grids


@pytest.fixture(scope="module")
def sr_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sr")
    (out / "sr.yaml").write_text(yaml.safe_dump(SR))
    assert main(["train", str(out / "sr.yaml"), "--out", str(out / "run"), "--max-steps", "2", "--no-progress"]) == 0
    perturb(out / "run")
    return out / "run"


@pytest.mark.parametrize("method", METHODS)
def test_a_super_resolution_teacher_gives_a_student_that_upscales(sr_run, tmp_path, capsys, method):
    from PIL import Image

    from torchdiffusion.loading import load_run

    out = tmp_path / method
    assert main(["distill", str(sr_run), "--method", method, "--out", str(out), *DISTILL]) == 0
    capsys.readouterr()
    for name, value in (("a", 40), ("b", 220)):
        Image.new("L", (4, 4), value).save(tmp_path / f"{name}.png")
        assert main(["upscale", "--sr-run", str(out), "--image", str(tmp_path / f"{name}.png"), "--steps", "1",
                     "--num", "1", "--out", str(tmp_path / name)]) == 0
    model = load_run(out).model
    x, s = torch.randn(1, 1, 8, 8), torch.tensor([1.0])
    with torch.no_grad():
        lo = [model(x, s, low_res=torch.full((1, 1, 4, 4), v), aug_level=torch.zeros(1)) for v in (-0.8, 0.8)]
    assert relative_change(*lo) > 1e-4  # the low-resolution input reaches the student
    if method == "reflow":
        pairs = load_file(str(out / "reflow_pairs.safetensors"))
        assert pairs["low_res"].shape == (8, 1, 4, 4) and pairs["aug_level"].shape == (8,)
        assert float(pairs["aug_level"].max()) <= 0.3


@pytest.fixture(scope="module")
def control_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("control")
    (out / "base.yaml").write_text(yaml.safe_dump(BASE))
    assert main(["train", str(out / "base.yaml"), "--out", str(out / "base"), "--max-steps", "2",
                 "--no-progress"]) == 0
    assert main(["train-controlnet", str(out / "base"), "shapes_controlnet", *sets(CONTROL), "--max-steps", "2",
                 "--out", str(out / "cn"), "--no-progress"]) == 0
    perturb(out / "cn", ("controlnet.",))
    return out / "cn"


@pytest.mark.parametrize("method", METHODS)
def test_a_controlnet_teacher_gives_a_student_sampled_with_a_control_image(control_run, tmp_path, capsys, method):
    from PIL import Image

    from torchdiffusion.controlnet import load_controlled_run

    out = tmp_path / method
    assert main(["distill", str(control_run), "--method", method, "--out", str(out), *DISTILL]) == 0
    capsys.readouterr()
    mask = Image.new("L", (16, 16), 0)
    mask.paste(255, (4, 4, 12, 12))
    mask.save(tmp_path / "mask.png")
    assert main(["sample", str(out), "--control", str(tmp_path / "mask.png"), "--steps", "2", "--num", "2",
                 "--tiles", str(tmp_path / "t.png")]) == 0
    assert last_json(capsys)["nfe"] == 2
    assert main(["sample", str(out), "--steps", "2", "--num", "2"]) == 2  # no control image: one paragraph
    assert "--control" in capsys.readouterr().err
    model = load_controlled_run(out).model
    x, s = torch.randn(1, 3, 16, 16), torch.tensor([1.0])
    with torch.no_grad():
        outs = [model(x, s, control=torch.full((1, 1, 16, 16), v)) for v in (-1.0, 1.0)]
    assert relative_change(*outs) > 1e-4  # the control image reaches the student
    if method == "reflow":
        assert load_file(str(out / "reflow_pairs.safetensors"))["control"].shape == (8, 1, 16, 16)
