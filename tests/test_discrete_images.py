"""Discrete diffusion on images through the token core: quantised Fashion-MNIST, the token U-Net, and a tiny
fashion_mnist_d3pm run trained, sampled to PNG tiles with classifier-free guidance, and scored in bits per dim;
eval refuses the flags of sample-based evaluation on token runs."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from torchdiffusion.cli import main
from torchdiffusion.config import ConfigError, load_config
from torchdiffusion.data import DatasetNotFoundError, token_images
from torchdiffusion.data.quantized import quantise
from torchdiffusion.nn.token_unet import TokenUNet, TokenUNetConfig
from torchdiffusion.train.trainer import train

try:
    from torchdiffusion.data import load_dataset

    load_dataset("fashion_mnist_levels", limit=1)
    HAVE_FASHION = True
except DatasetNotFoundError:
    HAVE_FASHION = False
needs_fashion = pytest.mark.skipif(not HAVE_FASHION, reason="dataset-fashion-mnist not installed (make data)")


def test_quantise_cuts_256_grey_values_into_equal_bins():
    v = np.arange(256, dtype=np.uint8)
    assert torch.equal(quantise(v, 8), torch.arange(256) // 32)
    assert torch.equal(quantise(v, 2), (torch.arange(256) >= 128).long())


def test_token_images_map_classes_to_evenly_spaced_grey_levels():
    ids = torch.arange(8).repeat(98)[None]  # (1, 784)
    x = token_images("fashion_mnist_levels", ids, 8)
    assert x.shape == (1, 1, 28, 28) and float(x.min()) == -1 and float(x.max()) == 1
    assert torch.allclose(x.flatten()[:8], torch.linspace(-1, 1, 8))
    with pytest.raises(ValueError, match="not an image token set"):
        token_images("kjv", ids, 8)


def small_token_unet(**kw) -> TokenUNet:
    return TokenUNet(TokenUNetConfig(vocab_size=4, image_size=8, base_channels=8, channel_mult=(1, 2),
                                     num_res_blocks=1, **kw))


def test_the_token_unet_gives_k_logits_per_pixel_in_raster_order():
    net = small_token_unet(num_classes=3)
    torch.nn.init.normal_(net.conv_out.weight)
    x = torch.randint(0, 4, (2, 64))
    out = net(x, torch.tensor([10.0, 500.0]), torch.tensor([0, 3]))
    assert out.shape == (2, 64, 4) and net.config.data_shape == (64,) and net.config.seq_len == 64
    # raster order: the logits of pixel (r, c) are conv_out's output at (r, c)
    grey = (2.0 * x.float() / 3 - 1).view(2, 1, 8, 8)
    image = super(TokenUNet, net).forward(grey, torch.tensor([10.0, 500.0]), torch.tensor([0, 3]))
    assert torch.allclose(out[1, 8 * 3 + 5], image[1, :, 3, 5])


@pytest.mark.parametrize("kw, message", [
    ({"in_channels": 3}, "in_channels"), ({"learned_variance": True}, "learned_variance"),
    ({"vocab_size": 1}, "vocab_size must be >= 2"),
])
def test_the_token_unet_config_refuses_what_it_cannot_do(kw, message):
    base = dict(vocab_size=4, image_size=8, base_channels=8, channel_mult=(1, 2))
    with pytest.raises(ValueError, match=message):
        TokenUNetConfig(**{**base, **kw})


def test_the_token_unet_refuses_ids_of_the_wrong_shape_or_range():
    net = small_token_unet()
    with pytest.raises(ValueError, match=r"integer ids \(B, 64\)"):
        net(torch.zeros(2, 63, dtype=torch.long), torch.zeros(2))
    with pytest.raises(ValueError, match=r"ids must be in \[0, 4\)"):
        net(torch.full((2, 64), 4), torch.zeros(2))


TINY = ["data.limit=16", "process.T=20", "model.params.base_channels=8", "model.params.channel_mult=[1,2]",
        "model.params.attn_resolutions=[]", "train.batch_size=4", "train.ckpt_every=2", "train.sample_every=0",
        "train.warmup_steps=1", "train.log_every=1", "sample.steps=4", "sample.num=10"]


def test_the_packaged_config_pairs_the_gaussian_kernel_with_the_token_unet():
    cfg = load_config("fashion_mnist_d3pm")
    assert cfg.process.name == "gaussian" and cfg.model.backbone == "token_unet" and cfg.loss.kind == "d3pm"
    with pytest.raises(ConfigError, match="model.params.vocab_size must be 8"):
        load_config("fashion_mnist_d3pm", ["model.params.vocab_size=9"])
    with pytest.raises(ConfigError, match="'sequence_transformer' or 'token_unet'"):
        load_config("fashion_mnist_d3pm", ["model.backbone=unet"])


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    if not HAVE_FASHION:
        pytest.skip("dataset-fashion-mnist not installed (make data)")
    out = tmp_path_factory.mktemp("fm_d3pm") / "run"
    train(load_config("fashion_mnist_d3pm", TINY), out, max_steps=2, progress=False, device="cpu")
    return out


@needs_fashion
def test_an_image_token_run_samples_a_guided_png_grid(image_run, tmp_path, capsys):
    png = tmp_path / "grid.png"
    assert main(["sample", str(image_run), "--num", "6", "--steps", "3", "--tiles", str(png), "--class-label", "2",
                 "--guidance-scale", "3"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["guidance_scale"] == 3.0 and summary["num"] == 6 and summary["tiles"] == str(png)
    image = np.asarray(Image.open(png))
    assert image.ndim == 2 and image.shape[0] >= 28 and image.shape[1] >= 3 * 28
    # every pixel of a sample is one of the 8 grey levels
    levels = set(np.round(np.linspace(0, 255, 8)).astype(int).tolist())
    assert set(np.unique(image[:28, :28]).tolist()) <= levels | {v + d for v in levels for d in (-1, 1)}


@needs_fashion
def test_an_image_token_run_samples_with_guidance_of_the_reverse_transition(image_run, tmp_path, capsys):
    png = tmp_path / "transition.png"
    assert main(["sample", str(image_run), "--num", "4", "--steps", "3", "--tiles", str(png), "--class-label", "1",
                 "--guidance-scale", "2", "--guidance-mode", "transition"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["guidance_mode"] == "transition" and summary["calls"] == 3 and png.is_file()


@needs_fashion
def test_eval_scores_an_image_token_run_in_bits_per_dim(image_run, tmp_path):
    assert main(["eval", str(image_run), "--metrics", "nll", "--bpd-num", "3", "--elbo-steps", "2", "--out",
                 str(tmp_path), "--no-plots", "--no-progress"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert "bits_per_char" not in report and 0 < report["bits_per_dim"] < 20 and report["nll"]["windows"] == 3
    assert "null label" in report["nll"]["what"]


@needs_fashion
@pytest.mark.parametrize("flags", [["--nfe", "10"], ["--samplers", "ddim"], ["--num", "50"],
                                   ["--features", "fashion_mnist"]])
def test_eval_refuses_sampling_flags_on_a_token_run(image_run, flags, capsys):
    try:
        status = main(["eval", str(image_run), "--metrics", "nll", "--no-plots", "--no-progress", *flags])
    except SystemExit as e:
        status = e.code
    assert status == 2
    err = capsys.readouterr().err
    assert flags[0] in err and re.search("held-out likelihood only", err) and "torchdiffusion sample" in err


@needs_fashion
@pytest.mark.parametrize("args, message", [
    (["--length", "10"], "--length do not apply"), (["--negative-class", "1"], "--negative-class do not apply"),
    (["--class-label", "12"], r"lie outside 0..9"),
])
def test_bad_image_token_sample_arguments_exit_2(image_run, args, message, capsys):
    try:
        status = main(["sample", str(image_run), "--num", "2", "--steps", "2", *args])
    except SystemExit as e:
        status = e.code
    assert status == 2 and re.search(message, capsys.readouterr().err)
