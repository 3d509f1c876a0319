"""The web page's server side, without a browser: every field checked, errors shown in the page (gr.Error), the
same seed giving the same images, masks from paint and uploads, training logs read while written, and the server
bound to 127.0.0.1 by default and surviving bad requests."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

gr = pytest.importorskip("gradio")  # the `ui` extra (installed by `make test` through the dev extra)

from torchdiffusion.ui import limits  # noqa: E402
from torchdiffusion.ui.draw import draw  # noqa: E402
from torchdiffusion.ui.edit import edit  # noqa: E402
from torchdiffusion.ui.errors import shown_in_page  # noqa: E402
from torchdiffusion.ui.images import from_image, mask_from_paint, mask_from_upload  # noqa: E402
from torchdiffusion.ui.runs import Models, find_runs  # noqa: E402
from torchdiffusion.ui.training import latest_grids, read_metrics, summary, thin  # noqa: E402


@pytest.fixture(scope="module")
def runs(tiny_run):
    """The folder holding tiny_run (a run named "run")."""
    return tiny_run.parent


@pytest.fixture(scope="module")
def models(runs):
    return Models(runs)


def pixels(img) -> np.ndarray:
    return np.asarray(img)


GOOD = dict(sampler="ddim", steps=3, seed=0, batch=2)


@pytest.mark.parametrize("change, match", [
    ({"steps": 0}, r"steps must be an integer in \[1, 500\]"),
    ({"steps": 10**6}, r"steps must be an integer in \[1, 500\]"),
    ({"steps": 2.5}, "steps must be an integer"),
    ({"steps": float("nan")}, "steps must be an integer"),
    ({"batch": limits.MAX_BATCH + 1}, r"batch size must be an integer in \[1, 16\]"),
    ({"seed": -1}, "seed must be an integer"),
    ({"seed": None}, "seed must be an integer"),
    ({"sampler": "magic"}, "sampler 'magic' is not one of"),
    ({"options": "{etta: 1}"}, "unknown option.*etta.*ddim"),
    ({"options": "{eta: .nan}"}, "eta must be a finite number"),
    ({"options": "[1, 2"}, "not valid YAML"),
    ({"options": "5"}, "must be a mapping"),
    ({"scale": 3.0}, "need a conditional model"),
    ({"scale": float("inf")}, r"guidance scale must be a number in \[0, 30\]"),
    ({"rescale": 2.0}, r"guidance rescale must be a number in \[0, 1\]"),
    ({"prompt": "a cat"}, "no text conditioning"),
    ({"prompt": "x" * 501}, "at most 500"),
    ({"interval_lo": 5, "interval_hi": 1}, "needs low < high"),
])
def test_a_bad_generate_field_is_a_value_error_naming_it(models, change, match):
    with pytest.raises(ValueError, match=match):
        draw(models, "run", **{**GOOD, **change})


def test_an_unknown_run_is_refused_naming_the_runs(models):
    with pytest.raises(ValueError, match=r"no run '\.\./etc' under .*pick one of: run"):
        draw(models, "../etc", **GOOD)


def test_the_same_seed_gives_the_same_images_in_any_batch(models):
    a, settings = draw(models, "run", sampler="ddpm", steps=3, seed=5, batch=3)  # a stochastic sampler
    b, _ = draw(models, "run", sampler="ddpm", steps=3, seed=5, batch=3)
    c, _ = draw(models, "run", sampler="ddpm", steps=3, seed=6, batch=1)
    assert all(np.array_equal(pixels(x), pixels(y)) for x, y in zip(a, b))
    assert np.array_equal(pixels(a[1]), pixels(c[0]))  # sample i uses seed + i
    assert not np.array_equal(pixels(a[0]), pixels(a[1]))
    assert settings["seeds"] == [5, 6, 7] and settings["nfe"] == 3 and settings["sampler"] == "ddpm"
    assert a[0].size == (8, 8) and a[0].mode == "L"
    json.dumps(settings)  # the settings download is plain JSON


def test_progress_reports_every_step(models):
    seen = []
    draw(models, "run", sampler="heun", steps=4, seed=0, batch=1, progress=lambda k, n: seen.append((k, n)))
    assert seen == [(k, 4) for k in range(1, 5)]


def test_errors_are_shown_in_the_page_and_bugs_say_so():
    @shown_in_page
    def user(x):
        raise ValueError(f"steps must be an integer, got {x}\n\nsecond line")

    @shown_in_page
    def bug(x, progress=None):
        raise KeyError(x)

    with pytest.raises(gr.Error, match="steps must be an integer, got 7 second line"):
        user(7)
    with pytest.raises(gr.Error, match=r"internal error \(KeyError\).*server's log"):
        bug(1)
    import inspect
    assert list(inspect.signature(bug).parameters) == ["x", "progress"]  # gradio still sees gr.Progress


def test_an_upload_becomes_the_models_shape_in_minus_one_to_one():
    rgb = np.zeros((40, 30, 3), np.uint8)
    rgb[:, 15:] = 255
    x = from_image(rgb, (1, 8, 8))
    assert x.shape == (1, 1, 8, 8) and x.min() == -1 and x.max() == 1
    one = torch.tensor(1.0)
    assert torch.allclose(x[..., :3], -one, atol=0.02) and torch.allclose(x[..., 5:], one, atol=0.02)  # Lanczos rings
    rgba = np.zeros((8, 8, 4), np.uint8)  # fully transparent: white, as a viewer shows it
    assert torch.all(from_image(rgba, (3, 8, 8)) == 1)
    with pytest.raises(ValueError, match="upload an image first"):
        from_image(None, (1, 8, 8))
    with pytest.raises(ValueError, match=r"5000x1 pixels; each side must lie in \[1, 4096\]"):
        from_image(np.zeros((1, 5000), np.uint8), (1, 8, 8))


def test_paint_and_uploaded_masks_mark_what_to_fill_in():
    layer = np.zeros((64, 64, 4), np.uint8)
    layer[:8, :8, 3] = 255  # the top-left model pixel painted
    m = mask_from_paint([layer], (3, 8, 8))
    assert m.shape == (3, 8, 8) and m[:, 0, 0].eq(0).all() and m.sum() == 3 * 63
    up = np.zeros((16, 16), np.uint8)
    up[:, 8:] = 255  # right half white: kept; left half black: filled in (the CLI's mask files read the same)
    m = mask_from_upload(up, (1, 8, 8))
    assert m[0, :, :4].eq(0).all() and m[0, :, 4:].eq(1).all()


def test_inpainting_with_a_painted_mask_keeps_the_observed_pixels(models):
    img = np.full((8, 8), 255, np.uint8)
    img[4:] = 0
    layer = np.zeros((8, 8, 4), np.uint8)
    layer[:, :4, 3] = 255  # left half missing
    y, out, settings = edit(models, "run", "inpaint", img, painted=[layer], method="replacement", nfe=5, count=2)
    assert len(out) == 2 and out[0].size == (8, 8) and settings["masked_pixels"] == 32
    # replacement ends on the measurement where observed (noise_std 0): the right half is the upload
    for o in out:
        assert np.array_equal(pixels(o)[:, 4:], img[:, 4:])


@pytest.mark.parametrize("task, kwargs, match", [
    ("inpaint", {}, "the mask is empty"),
    ("upscale", {"factor": 3}, "factor 3 must divide"),
    ("restore", {"blur_size": 4}, "kernel size must be odd"),
    ("img2img", {"strength": 1.5}, r"strength must be a number in \[0, 1\]"),
    ("inpaint", {"method": "magic"}, "method 'magic' is not one of"),
    ("inpaint", {"options": "{particles: 100000}", "method": "smc"}, r"particles must be an integer in \[1, 256\]"),
    ("restore", {"options": "{zeta: 1}", "method": "ddrm"}, "unknown option.*zeta.*ddrm"),
    ("outpaint", {}, "task 'outpaint' is not one of"),
    ("restore", {"noise_std": -1}, "noise std must be a number"),
    ("restore", {"nfe": 0}, "denoiser calls must be an integer"),
])
def test_a_bad_edit_field_is_a_value_error_naming_it(models, task, kwargs, match):
    with pytest.raises(ValueError, match=match):
        edit(models, "run", task, np.zeros((8, 8), np.uint8), **{"nfe": 3, **kwargs})


@pytest.mark.parametrize("task, kwargs", [("img2img", {"strength": 0.5}), ("upscale", {"method": "ddrm"}),
                                          ("restore", {"method": "dps", "simulate": False}),
                                          ("upscale", {"method": "pigdm", "simulate": False})])
def test_every_edit_task_returns_images(models, task, kwargs):
    y, out, settings = edit(models, "run", task, np.zeros((8, 8), np.uint8), nfe=3, count=2, **kwargs)
    assert len(out) == 2 and all(o.size == (8, 8) for o in out) and y.size == (8, 8)
    assert settings["task"] == task


def test_training_logs_are_read_while_written(tmp_path):
    run = tmp_path / "r"
    (run / "samples").mkdir(parents=True)
    rows = [{"step": i, "loss": 1.0 / i, "images_per_s": 10.0} for i in range(1, 13)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 13, "lo')
    got = read_metrics(run)
    assert [r["step"] for r in got] == list(range(1, 13))  # the torn last line is skipped
    s = summary(got)
    assert s["step"] == 12 and s["images_per_s"] == 10.0 and s["loss_last10"] == pytest.approx(np.mean(
        [1.0 / i for i in range(3, 13)]))
    assert thin(got, 5)[-1]["step"] == 12 and len(thin(got, 5)) <= 5
    for step in (2, 10, 4):
        (run / "samples" / f"step-{step:08d}.png").write_bytes(b"")
    assert [p.name for p in latest_grids(run, 2)] == ["step-00000010.png", "step-00000004.png"]
    assert summary([])["loss"] is None and read_metrics(tmp_path) == []


def test_runs_are_found_below_the_served_folder(tmp_path, tiny_run):
    (tmp_path / "a" / "b" / "run").mkdir(parents=True)
    (tmp_path / "a" / "b" / "run" / "metrics.jsonl").write_text("")
    (tmp_path / "empty").mkdir()
    assert list(find_runs(tmp_path)) == ["a/b/run"]
    assert list(find_runs(tiny_run)) == ["."]  # a run directory serves itself
    assert Models(tmp_path).names() == []  # no checkpoint: not offered for sampling
    with pytest.raises(ValueError, match="is not a folder"):
        find_runs(tmp_path / "nope")


def test_the_server_binds_localhost_and_survives_bad_requests(runs):
    from gradio_client import Client

    from ui_server import free_port, listening_addresses, start, stop

    port = free_port()
    proc, url = start(runs, "--port", str(port))
    try:
        assert url.startswith(f"http://127.0.0.1:{port}")
        assert listening_addresses(port) == ["127.0.0.1"]  # not 0.0.0.0, not every interface
        client = Client(url, verbose=False)
        good = ["run", "ddim", 3, 0, 2, "all", "", "", 1, 0, None, None, ""]
        for bad, match in [({12: "{etta: 1}"}, "unknown option"), ({2: 10**6}, "maximum"),
                           ({0: "../../etc"}, "not in the list of choices|no run"), ({8: 5.0}, "conditional model")]:
            args = list(good)
            for i, v in bad.items():
                args[i] = v
            with pytest.raises(Exception, match=match):
                client.predict(*args, api_name="/run_generate")
        import httpx
        big = httpx.post(f"{url}/gradio_api/upload", files={"files": ("big.png", b"0" * (8 * 2**20 + 1))})
        assert big.status_code == 413 and "exceeded maximum allowed size" in big.text  # limits.MAX_UPLOAD
        gallery, files, settings = client.predict(*good, api_name="/run_generate")
        assert len(gallery) == 2 and settings["seeds"] == [0, 1] and proc.poll() is None
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def cond_models(tmp_path_factory):
    """A class-conditional tiny run (10 digit classes, label dropout), trained 2 steps."""
    import copy

    import yaml

    from test_train_cli import TINY
    from torchdiffusion.config import load_config
    from torchdiffusion.train.trainer import train

    cfg = copy.deepcopy(TINY)
    cfg["model"]["params"]["num_classes"] = 10
    cfg["train"]["cond_drop"] = 0.1
    out = tmp_path_factory.mktemp("cond")
    (out / "cond.yaml").write_text(yaml.safe_dump(cfg))
    train(load_config(out / "cond.yaml"), out / "runs" / "cond", max_steps=2, progress=False, device="cpu")
    return Models(out / "runs")


def test_class_labels_and_guidance_reach_a_conditional_model(cond_models):
    images, s = draw(cond_models, "cond", sampler="ddim", steps=3, seed=0, batch=3, labels="1,2", scale=3.0,
                     rescale=0.5, interval_lo=0.1, interval_hi=10)
    assert s["class_labels"] == [1, 2, 1] and s["guidance_scale"] == 3.0 and s["guidance_interval"] == [0.1, 10]
    plain, _ = draw(cond_models, "cond", sampler="ddim", steps=3, seed=0, batch=3, labels="1,2")
    assert not np.array_equal(pixels(images[0]), pixels(plain[0]))  # the guidance changed the samples
    with pytest.raises(ValueError, match=r"class labels \[10\] lie outside 0..9"):
        draw(cond_models, "cond", sampler="ddim", steps=3, seed=0, batch=1, labels="10")
    with pytest.raises(ValueError, match="integers separated by commas"):
        draw(cond_models, "cond", sampler="ddim", steps=3, seed=0, batch=1, labels="cat")


@pytest.fixture(scope="module")
def text_models(tmp_path_factory):
    """A text-conditional tiny run (captioned shapes, 16x16, caption dropout), trained 1 step."""
    from test_conditioning import TEXT, make
    from torchdiffusion.train.trainer import Trainer

    out = tmp_path_factory.mktemp("text")
    Trainer(make({**TEXT, "train": {**TEXT["train"], "ckpt_every": 1}}), out / "runs" / "text", progress=False,
            quiet=True).run(max_steps=1)
    return Models(out / "runs")


def test_prompt_and_negative_prompt_reach_a_text_conditional_model(text_models):
    args = dict(sampler="ddim", steps=3, seed=5, batch=2, prompt="a large red circle", scale=3.0)
    images, s = draw(text_models, "text", **args)
    assert len(images) == 2 and images[0].size == (16, 16)
    assert s["prompt"] == "a large red circle" and s["negative_prompt"] == "" and s["guidance_scale"] == 3.0
    again, _ = draw(text_models, "text", **args)
    assert all(np.array_equal(pixels(a), pixels(b)) for a, b in zip(images, again))  # same seed, same images
    _, s = draw(text_models, "text", **args, negative_prompt="a blue square")
    assert s["negative_prompt"] == "a blue square"
    from torchdiffusion.text.context import encode_prompts
    from torchdiffusion.ui.conditions import recipe

    with text_models.use("text") as loaded:
        made, _ = recipe(loaded.model, 2, prompt="a large red circle", negative_prompt="a blue square",
                         scale=3.0)
    torch.testing.assert_close(made.cond["context"], encode_prompts(["a large red circle"] * 2)["context"])
    torch.testing.assert_close(made.negative["context"], encode_prompts(["a blue square"] * 2)["context"])
    assert not made.uncond["context_mask"].any()  # the unconditional branch is the empty context
    with pytest.raises(ValueError, match="text-conditional: give a prompt"):
        draw(text_models, "text", sampler="ddim", steps=3, seed=0, batch=1)
