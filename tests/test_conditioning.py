"""Class-conditional training: labels reach the backbone, drop to the null label at the configured rate,
and conditional sampling binds one label per sample whatever the batch size."""

import copy
import math

import pytest
import torch

from torchdiffusion.config import ConfigError, RunConfig, from_dict, validate
from torchdiffusion.denoiser import Conditioned, CountingDenoiser
from torchdiffusion.generate import generate
from torchdiffusion.train.trainer import Trainer

COND = {
    "data": {"name": "digits", "limit": 200},
    "process": {"name": "ddpm", "schedule": "cosine", "T": 50},
    "model": {"backbone": "unet", "prediction": "v",
              "params": {"in_channels": 1, "image_size": 8, "base_channels": 8, "channel_mult": [1, 2],
                         "num_res_blocks": 1, "attn_resolutions": [], "num_heads": 2, "num_classes": 10}},
    "train": {"batch_size": 16, "lr": 1e-3, "warmup_steps": 1, "sample_every": 0, "cond_drop": 0.25},
    "sample": {"sampler": "ddim", "steps": 3, "num": 10},
}


def make(d=COND, **train):
    d = copy.deepcopy(d)
    d["train"].update(train)
    cfg = from_dict(RunConfig, d)
    validate(cfg)
    return cfg


def test_labels_drop_to_null_at_the_configured_rate(tmp_path):
    tr = Trainer(make(), tmp_path, progress=False, quiet=True)
    labels = torch.arange(20000) % 10
    out = tr.condition(labels)["class_labels"]
    dropped = out == 10
    assert abs(dropped.float().mean().item() - 0.25) < 0.015  # 4.6 binomial standard errors
    assert torch.equal(out[~dropped], labels[~dropped])


def test_unconditional_models_get_no_condition(tmp_path):
    d = copy.deepcopy(COND)
    del d["model"]["params"]["num_classes"]
    tr = Trainer(make(d), tmp_path, progress=False, quiet=True)
    state = tr.noise_gen.get_state()
    assert tr.condition(torch.arange(8)) == {}
    assert torch.equal(tr.noise_gen.get_state(), state)  # no random draw: unconditional runs are unchanged


def test_labels_outside_the_model_classes_are_refused(tmp_path):
    d = copy.deepcopy(COND)
    d["model"]["params"]["num_classes"] = 5  # digits has labels 0..9
    tr = Trainer(make(d), tmp_path, progress=False, quiet=True)
    with pytest.raises(ValueError, match="num_classes is 5"):
        tr.train_step()


def test_training_step_reaches_the_label_embedding(tmp_path):
    tr = Trainer(make(cond_drop=0.0), tmp_path, progress=False, quiet=True)
    before = tr.model.backbone.label_embed.weight.detach().clone()
    for _ in range(4):  # zero-initialised output convs pass no gradient to the embedding in the first steps
        tr.train_step()
    changed = (tr.model.backbone.label_embed.weight.detach() != before).any(1)
    assert changed[:10].any() and not changed[10]  # null row untouched when nothing is dropped


def test_cond_drop_out_of_range_is_a_config_error():
    with pytest.raises(ConfigError, match="train.cond_drop"):
        make(cond_drop=1.0)


def test_conditional_sample_of_seed_k_is_the_same_at_any_batch_size(tmp_path):
    tr = Trainer(make(), tmp_path, progress=False, quiet=True)
    with torch.no_grad():  # random weights: the zero-initialised fresh net would ignore its label
        for p in tr.ema.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    labels = torch.arange(7) % 10
    a, _ = generate(tr.ema, (1, 8, 8), 7, steps=4, seed=3, batch_size=7, cond={"class_labels": labels})
    b, _ = generate(tr.ema, (1, 8, 8), 7, steps=4, seed=3, batch_size=2, cond={"class_labels": labels})
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    c, _ = generate(tr.ema, (1, 8, 8), 7, steps=4, seed=3, batch_size=7, cond={"class_labels": (labels + 1) % 10})
    assert not torch.allclose(a, c)  # the label matters


def test_cond_rows_must_match_num(tmp_path):
    tr = Trainer(make(), tmp_path, progress=False, quiet=True)
    with pytest.raises(ValueError, match="one row per sample"):
        generate(tr.ema, (1, 8, 8), 4, steps=2, cond={"class_labels": torch.zeros(3, dtype=torch.long)})


def test_conditioned_binds_cond_and_passes_attributes_through():
    seen = {}

    class D:
        sigma_min = 0.01

        def __call__(self, x, sigma, **cond):
            seen.update(cond)
            return x

    d = CountingDenoiser(Conditioned(D(), class_labels=torch.tensor([1])))
    d(torch.zeros(1, 2), torch.ones(1))
    assert d.sigma_min == 0.01 and d.calls == 1 and seen["class_labels"].item() == 1


CLASSIFIER = {
    "data": {"name": "digits"},
    "process": {"name": "ddpm", "schedule": "cosine", "T": 100},
    "model": {"backbone": "classifier",
              "params": {"in_channels": 1, "num_classes": 10, "base_channels": 16, "channel_mult": [1, 2],
                         "num_res_blocks": 1, "image_size": 8, "groups": 8}},
    "loss": {"kind": "classifier"},
    "train": {"batch_size": 64, "lr": 3e-3, "warmup_steps": 5, "sample_every": 100, "ema_decay": 0.9},
}


def test_noisy_classifier_learns_labels_at_low_noise_and_falls_to_chance_at_high_noise(tmp_path):
    from torchdiffusion.data import load_dataset

    tr = Trainer(make(CLASSIFIER), tmp_path, progress=False, quiet=True)
    for _ in range(150):
        tr.train_step()
    x, y = load_dataset("digits")
    x, y = x[-300:], y[-300:]  # never mind overlap with training data: this is a wiring test
    with torch.no_grad():
        low = (tr.model.raw_ve(x, 0.05).argmax(1) == y).float().mean().item()
        high = tr.model.raw_ve(x + 80 * torch.randn_like(x), 80.0).softmax(1)
    assert low > 0.8
    assert high.max(1).values.mean() < 0.5  # at sigma 80 the image is gone; p(y | x) ~ the prior


def test_classifier_config_needs_the_classifier_loss():
    d = copy.deepcopy(CLASSIFIER)
    d["loss"]["kind"] = "simple"
    with pytest.raises(ConfigError, match="do not go together"):
        make(d)


# ---- guidance recipes through generate() and the CLI


def _random_weights(model):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return model


def test_recipe_scale_one_is_the_conditional_model_and_scale_zero_the_null_label(tmp_path):
    from torchdiffusion.conditioning import GuidanceRecipe

    model = _random_weights(Trainer(make(), tmp_path, progress=False, quiet=True).ema)
    y, null = torch.arange(6) % 10, torch.full((6,), 10)
    run = lambda **kw: generate(model, (1, 8, 8), 6, steps=4, seed=1, batch_size=4, **kw)[0]
    cond = run(cond={"class_labels": y})
    torch.testing.assert_close(run(guidance=GuidanceRecipe(cond={"class_labels": y},
                                                           uncond={"class_labels": null})), cond)
    torch.testing.assert_close(run(guidance=GuidanceRecipe(cond={"class_labels": y}, uncond={"class_labels": null},
                                                           scale=0.0)), run(cond={"class_labels": null}))
    guided = run(guidance=GuidanceRecipe(cond={"class_labels": y}, uncond={"class_labels": null}, scale=3.0))
    assert not torch.allclose(guided, cond)


def test_recipe_refuses_guidance_without_a_null_condition():
    from torchdiffusion.conditioning import GuidanceRecipe

    with pytest.raises(ValueError, match="unconditional or negative"):
        GuidanceRecipe(cond={"class_labels": torch.zeros(2, dtype=torch.long)}, scale=2.0)


@pytest.fixture(scope="module")
def cond_run(tmp_path_factory):
    import yaml

    from torchdiffusion.cli import main

    d = tmp_path_factory.mktemp("cond")
    (d / "c.yaml").write_text(yaml.safe_dump(COND))
    (d / "k.yaml").write_text(yaml.safe_dump(CLASSIFIER))
    assert main(["train", str(d / "c.yaml"), "--max-steps", "2", "--out", str(d / "model"), "--no-progress"]) == 0
    assert main(["train-classifier", str(d / "k.yaml"), "--max-steps", "2", "--out", str(d / "clf"),
                 "--no-progress"]) == 0
    return d


@pytest.mark.parametrize("flags", [
    ["--class-label", "3", "--guidance-scale", "3", "--guidance-rescale", "0.7", "--threshold", "dynamic"],
    ["--class-label", "1,2", "--negative-class", "0", "--guidance-scale", "2"],
    ["--guidance-scale", "2", "--guidance-interval", "0.5,10"],
    ["--class-label", "4", "--classifier", "CLF", "--classifier-scale", "2", "--threshold", "static",
     "--guidance-interval", "0,10"],
])
def test_sample_cli_guidance_flags(cond_run, flags, capsys):
    import json

    from torchdiffusion.cli import main

    flags = [str(cond_run / "clf") if f == "CLF" else f for f in flags]
    grid = cond_run / "g.png"
    assert main(["sample", str(cond_run / "model"), "--num", "3", "--steps", "3", "--grid", str(grid), *flags]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["nfe"] == 3 and grid.is_file()


def test_unbounded_classifier_guidance_on_a_long_sigma_range_warns(cond_run):
    """On this cosine table (sigma_max far above 100) classifier guidance without an interval warns; with one, not."""
    import warnings

    from torchdiffusion.cli import main

    base = ["sample", str(cond_run / "model"), "--num", "2", "--steps", "2", "--class-label", "4",
            "--classifier", str(cond_run / "clf"), "--classifier-scale", "2"]
    with pytest.warns(UserWarning, match="guidance-interval 0,10"):
        assert main(base) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert main([*base, "--guidance-interval", "0,10"]) == 0


@pytest.mark.parametrize("flags, message", [
    (["--class-label", "12"], "outside 0..9"),
    (["--class-label", "a"], "expects integers"),
    (["--prompt", "a red circle"], "no text conditioning"),
    (["--guidance-interval", "3,1"], "LO < HI"),
    (["--classifier", "MODEL"], "not a classifier run"),
])
def test_sample_cli_guidance_errors(cond_run, flags, message, capsys):
    from torchdiffusion.cli import main

    flags = [str(cond_run / "model") if f == "MODEL" else f for f in flags]
    assert main(["sample", str(cond_run / "model"), "--num", "2", "--steps", "2", *flags]) == 2
    assert message in capsys.readouterr().err


def test_sampling_a_classifier_run_is_refused(cond_run, capsys):
    from torchdiffusion.cli import main

    assert main(["sample", str(cond_run / "clf"), "--num", "2", "--steps", "2"]) == 2
    assert "not a diffusion model" in capsys.readouterr().err


# ---- text conditioning


TEXT = {
    "data": {"name": "shapes", "options": {"n": 48, "size": 16}},
    "process": {"name": "ddpm", "schedule": "cosine", "T": 50},
    "model": {"backbone": "unet", "prediction": "v",
              "params": {"in_channels": 3, "image_size": 16, "base_channels": 8, "channel_mult": [1, 2],
                         "num_res_blocks": 1, "attn_resolutions": [8], "num_heads": 2, "context_dim": 384}},
    "train": {"batch_size": 8, "lr": 1e-3, "warmup_steps": 1, "sample_every": 0, "cond_drop": 0.5},
}


def test_text_conditional_training_feeds_caption_states_and_drops_to_the_empty_context(tmp_path):
    from torchdiffusion.data import load_shapes
    from torchdiffusion.text.context import encode_prompts

    tr = Trainer(make(TEXT), tmp_path, progress=False, quiet=True)
    captions = load_shapes(n=48, size=16).captions
    idx = torch.arange(40)
    cond = tr.condition(torch.zeros(40, dtype=torch.long), idx)
    dropped = ~cond["context_mask"].any(1)
    assert 5 < int(dropped.sum()) < 35  # about half at cond_drop 0.5
    ref = encode_prompts([captions[i] for i in idx.tolist()])
    keep = ~dropped
    torch.testing.assert_close(cond["context"][keep], ref["context"][keep])
    assert torch.equal(cond["context_mask"][keep], ref["context_mask"][keep])
    loss0 = tr.train_step()["loss"]
    assert math.isfinite(loss0)


def test_sample_cli_with_prompts_and_a_negative_prompt(tmp_path, capsys, monkeypatch):
    """`sample --prompt A --prompt B --negative-prompt N`: prompts are cycled over the samples and encoded, the
    negative prompt replaces the empty one in the guidance formula, and the same seed gives the same images."""
    import json

    import numpy as np

    import torchdiffusion.text.context as text_context
    from torchdiffusion.cli import main

    Trainer(make({**TEXT, "train": {**TEXT["train"], "ckpt_every": 1}}), tmp_path / "run", progress=False,
            quiet=True).run(max_steps=1)
    encoded, encode = [], text_context.encode_prompts
    monkeypatch.setattr(text_context, "encode_prompts", lambda p, *a, **k: encoded.append(list(p)) or encode(p, *a, **k))

    def draw(*flags):
        npz = tmp_path / "s.npz"
        assert main(["sample", str(tmp_path / "run"), "--num", "3", "--steps", "3", "--npz", str(npz),
                     "--guidance-scale", "3", *flags]) == 0
        assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["nfe"] == 3
        return np.load(npz)["arr_0"]

    images = draw("--prompt", "a large red circle", "--prompt", "a blue square", "--negative-prompt", "a triangle")
    assert encoded == [["a large red circle", "a blue square", "a large red circle"], ["a triangle"] * 3]
    assert images.shape == (3, 16, 16, 3)
    assert np.array_equal(images, draw("--prompt", "a large red circle", "--prompt", "a blue square",
                                       "--negative-prompt", "a triangle"))
