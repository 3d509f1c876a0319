"""The packaged text-to-image latent configs (shapes_vae -> shapes_text_ldm, 64x64 captioned shapes) at tiny sizes:
train-autoencoder, train the cross-attention latent model, then `sample --prompt --negative-prompt
--guidance-scale 3` writes decoded 64x64 images, and `eval` scores decoded samples."""

import json

import numpy as np
import pytest

from torchdiffusion.cli import main
from torchdiffusion.config import load_config
from torchdiffusion.latent import load_autoencoder_config

TINY_AE = ["data.options.n=16", "model.base_channels=8", "loss.disc_start=1", "loss.disc_channels=8",
           "loss.disc_layers=1", "train.batch_size=4", "train.sample_every=0", "train.ckpt_every=2"]
TINY_LDM = ["data.options.n=16", "model.params.base_channels=8", "model.params.channel_mult=[1,2]",
            "model.params.attn_resolutions=[8]", "model.params.num_heads=2", "train.batch_size=4",
            "train.sample_every=0", "train.ckpt_every=2", "process.T=50", "train.precision=fp32"]


def sets(items):
    return [x for item in items for x in ("--set", item)]


def test_packaged_configs_agree_on_the_latent_shape(tmp_path):
    ae = load_autoencoder_config("shapes_vae")
    ldm = load_config("shapes_text_ldm", [f"autoencoder={tmp_path}"])
    p = ldm.model.params
    assert ae.model.latent_shape == (p["in_channels"], p["image_size"], p["image_size"]) == (4, 16, 16)
    assert ldm.data.options == ae.data.options and p["context_dim"] == 384 and ldm.train.cond_drop > 0


def test_pixel_baseline_config_matches_the_latent_recipe(tmp_path):
    # shapes_text64 is the pixel model benchmarks/latent_shapes_text.py measures the latent recipe against
    pixel = load_config("shapes_text64")
    ldm = load_config("shapes_text_ldm", [f"autoencoder={tmp_path}"])
    p = pixel.model.params
    assert pixel.data == ldm.data and pixel.loss == ldm.loss and pixel.process == ldm.process
    assert (p["in_channels"], p["image_size"]) == (3, 64) and p["context_dim"] == 384
    assert pixel.train.cond_drop == ldm.train.cond_drop and pixel.model.prediction == ldm.model.prediction
    # attention at the same 16x16 and 8x8 resolutions: 64 / 2 ** (levels - 1) reaches 8
    assert 64 // 2 ** (len(p["channel_mult"]) - 1) == 8 and p["attn_resolutions"] == [16, 8]


def train_text_ldm(out):
    """A tiny shapes_vae (2 steps) and a tiny shapes_text_ldm on it (2 steps) under out; the latent run's path."""
    assert main(["train-autoencoder", "shapes_vae", *sets(TINY_AE), "--max-steps", "2", "--out", str(out / "vae"),
                 "--no-progress"]) == 0
    assert main(["train", "shapes_text_ldm", "--set", f"autoencoder={out / 'vae'}", *sets(TINY_LDM),
                 "--max-steps", "2", "--out", str(out / "ldm"), "--no-progress"]) == 0
    return out / "ldm"


@pytest.fixture(scope="module")
def text_ldm(tmp_path_factory):
    return train_text_ldm(tmp_path_factory.mktemp("latent_text"))


def test_text_prompts_negative_prompts_and_guidance_sample_decoded_64px_images(text_ldm, tmp_path, capsys, monkeypatch):
    from torchdiffusion.text import context as text_context

    npz = tmp_path / "s.npz"

    def draw():
        capsys.readouterr()
        assert main(["sample", str(text_ldm), "--prompt", "a large red circle", "--negative-prompt", "a square",
                     "--guidance-scale", "3", "--num", "2", "--steps", "2", "--npz", str(npz), "--tiles",
                     str(tmp_path / "t.png")]) == 0
        assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["nfe"] == 2
        return np.load(npz)["arr_0"]

    images = draw()
    assert images.shape == (2, 64, 64, 3)  # decoded images, not 16x16x4 latents
    assert np.array_equal(images, draw())  # the same seed gives the same images
    encoded = []
    real = text_context.encode_prompts
    monkeypatch.setattr(text_context, "encode_prompts", lambda ps, *a: encoded.append(ps) or real(ps, *a))
    assert main(["sample", str(text_ldm), "--prompt", "a blue square", "--num", "2", "--steps", "2", "--npz",
                 str(npz)]) == 0
    # the prompt reaches the model's context, one per sample (the decoded 8-bit images of 2 training steps barely
    # move with it: on some CPUs they are bit for bit those of another prompt)
    assert encoded == [["a blue square"] * 2]


def test_eval_scores_decoded_samples_of_the_text_latent_model(text_ldm, tmp_path):
    from torchdiffusion.evaluate.report import EvalOptions, evaluate_run
    from torchdiffusion.metrics.features import FeatureNet, FeatureNetConfig, save_feature_net

    feats = tmp_path / "f.safetensors"
    save_feature_net(FeatureNet(FeatureNetConfig(in_channels=3, width=4, feature_dim=8)), feats)
    report = evaluate_run(text_ldm, EvalOptions(num=4, samplers=["ddim"], nfe=[2], metrics=["fid"],
                                                features=str(feats), plots=False, progress=False))
    assert report["latent"]["latent_shape"] == [4, 16, 16] and report["results"][0]["fid"] >= 0
