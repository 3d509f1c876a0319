"""Super-resolution (SR3) and cascades: the low-resolution image reaches the U-Net as extra input channels, the
noise-augmentation level reaches its embedding in training and sampling, a tiny SR run trains and samples end to end,
and bad configs and inputs are one clear error."""

import copy
import re
import json

import pytest
import torch
import torch.nn.functional as F
import yaml

from torchdiffusion.config import ConfigError, RunConfig, from_dict, load_config, validate
from torchdiffusion.inverse import Downsample
from torchdiffusion.inverse.superres import (augment, cascade, downsample_to, sampling_condition, training_condition,
                                             upscale)
from torchdiffusion.loading import load
from torchdiffusion.nn import UNet, UNetConfig
from torchdiffusion.train.trainer import Trainer, train

SR = {
    "data": {"name": "digits", "limit": 64},
    "process": {"name": "ddpm", "schedule": "cosine", "T": 50},
    "model": {"backbone": "unet", "prediction": "v",
              "params": {"in_channels": 1, "image_size": 8, "low_res_size": 4, "base_channels": 8,
                         "channel_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "num_heads": 2}},
    "superres": {"aug_sigma_max": 0.3, "aug_sigma": 0.1},
    "train": {"batch_size": 8, "lr": 1e-3, "warmup_steps": 1, "ckpt_every": 2, "sample_every": 2},
    "sample": {"sampler": "ddim", "steps": 2, "num": 4},
}


def make(d=SR):
    cfg = from_dict(RunConfig, copy.deepcopy(d))
    validate(cfg)
    return cfg


def sr_unet(size=8, low=4, upsample="bicubic", channels=1):
    net = UNet(UNetConfig(in_channels=channels, image_size=size, low_res_size=low, low_res_upsample=upsample,
                          base_channels=8, channel_mult=(1, 2), num_res_blocks=1, num_heads=2))
    torch.manual_seed(0)
    for p in net.parameters():  # a fresh U-Net's zeroed layers ignore the embedding and output 0: make it respond
        torch.nn.init.normal_(p, std=0.2)
    return net.eval()


@pytest.mark.parametrize("size,low,channels", [(8, 4, 1), (8, 2, 3), (28, 7, 1), (28, 14, 1)])
def test_sr_unet_output_has_the_shape_of_x(size, low, channels):
    net = sr_unet(size, low, channels=channels)
    x, low_res = torch.randn(3, channels, size, size), torch.randn(3, channels, low, low)
    assert net(x, torch.rand(3), low_res=low_res, aug_level=torch.rand(3)).shape == x.shape
    assert net.conv_in.in_channels == 2 * channels


@pytest.mark.parametrize("mode", ["nearest", "bilinear", "bicubic"])
def test_the_resized_low_res_is_concatenated_to_x(mode):
    net = sr_unet(upsample=mode)
    seen = {}
    net.conv_in.register_forward_pre_hook(lambda m, args: seen.update(h=args[0]))
    x, low_res = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 4, 4)
    net(x, torch.rand(2), low_res=low_res)
    align = {} if mode == "nearest" else {"align_corners": False}
    assert torch.equal(seen["h"][:, :1], x)
    assert torch.allclose(seen["h"][:, 1:], F.interpolate(low_res, size=(8, 8), mode=mode, **align))


def test_output_depends_on_low_res_and_aug_level():
    net = sr_unet()
    x, t, low_res = torch.randn(2, 1, 8, 8), torch.rand(2), torch.randn(2, 1, 4, 4)
    base = net(x, t, low_res=low_res, aug_level=torch.zeros(2))
    assert not torch.allclose(base, net(x, t, low_res=low_res + 1, aug_level=torch.zeros(2)))
    assert not torch.allclose(base, net(x, t, low_res=low_res, aug_level=torch.full((2,), 0.2)))
    assert torch.equal(base, net(x, t, low_res=low_res))  # no aug_level: level 0


def test_bad_low_res_inputs_are_clear_errors():
    net = sr_unet()
    x, t = torch.randn(2, 1, 8, 8), torch.rand(2)
    with pytest.raises(ValueError, match="super-resolution model .* needs low_res"):
        net(x, t)
    with pytest.raises(ValueError, match=r"low_res must have shape \(2, 1, 4, 4\)"):
        net(x, t, low_res=torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"aug_level must have shape \(2,\)"):
        net(x, t, low_res=torch.randn(2, 1, 4, 4), aug_level=torch.zeros(3))
    plain = UNet(UNetConfig(in_channels=1, image_size=8, base_channels=8, channel_mult=(1, 2), num_heads=2))
    with pytest.raises(ValueError, match="not a super-resolution model"):
        plain(x, t, low_res=torch.randn(2, 1, 4, 4))


def test_training_condition_is_the_pooled_image_plus_noise_at_the_told_level():
    x0 = torch.rand(4000, 1, 8, 8) * 2 - 1
    cond = training_condition(x0, 4, 0.3, torch.Generator().manual_seed(0))
    s = cond["aug_level"]
    assert s.shape == (4000,) and float(s.min()) >= 0 and float(s.max()) <= 0.3
    assert abs(float(s.mean()) - 0.15) < 0.005  # U[0, 0.3]: mean 0.15, standard error 0.0014
    n = (cond["low_res"] - Downsample(2)(x0)) / s.view(-1, 1, 1, 1)
    assert abs(float(n.mean())) < 0.01 and abs(float(n.std()) - 1) < 0.01  # 64000 N(0, 1) draws


def test_the_trainer_feeds_the_augmented_low_res_with_its_level(tmp_path):
    tr = Trainer(make(), tmp_path, progress=False, quiet=True)
    x0, labels, idx = tr.next_batch(8)
    state = tr.noise_gen.get_state()
    cond = tr.condition(labels, idx, slice(None), x0)
    tr.noise_gen.set_state(state)
    want = training_condition(x0, 4, 0.3, tr.noise_gen)
    assert set(cond) == {"low_res", "aug_level"}
    with pytest.raises(ValueError, match="pass x0"):
        tr.condition(labels, idx)
    assert torch.equal(cond["low_res"], want["low_res"]) and torch.equal(cond["aug_level"], want["aug_level"])
    seen = []
    tr.model.backbone.register_forward_pre_hook(lambda m, a, kw: seen.append(kw), with_kwargs=True)
    tr.train_step()
    assert seen and seen[0]["low_res"].shape == (8, 1, 4, 4) and seen[0]["aug_level"].shape == (8,)
    tr.close()


def test_sampling_condition_is_per_sample_and_zero_level_is_clean():
    low = torch.randn(3, 1, 4, 4)
    clean = sampling_condition(low, 0.0, seed=5)
    assert torch.equal(clean["low_res"], low) and torch.equal(clean["aug_level"], torch.zeros(3))
    noisy = sampling_condition(low, 0.2, seed=5)
    assert torch.equal(noisy["aug_level"], torch.full((3,), 0.2))
    assert not torch.equal(noisy["low_res"], low)
    # sample 1 of a batch seeded 5 is sample 0 of a batch seeded 6
    assert torch.equal(noisy["low_res"][1:], sampling_condition(low[1:], 0.2, seed=6)["low_res"])
    with pytest.raises(ValueError, match="aug_sigma"):
        sampling_condition(low, -0.1, seed=0)
    assert torch.equal(augment(low, torch.tensor([0.0, 1.0, 2.0]), torch.ones_like(low))[2], low[2] + 2)


@pytest.fixture(scope="module")
def sr_run(tmp_path_factory):
    """A tiny SR run (digits 4x4 -> 8x8) trained for 2 steps, its sample tiles included."""
    out = tmp_path_factory.mktemp("sr")
    (out / "sr.yaml").write_text(yaml.safe_dump(SR))
    train(load_config(out / "sr.yaml"), out / "run", max_steps=2, progress=False, device="cpu")
    return out / "run"


def test_a_tiny_sr_run_trains_loads_and_upscales(sr_run):
    assert (sr_run / "samples" / "step-00000002.png").is_file()
    model, cfg = load(sr_run)
    assert cfg.superres.aug_sigma_max == 0.3 and model.backbone.config.low_res_size == 4
    seen = []
    model.backbone.register_forward_pre_hook(lambda m, a, kw: seen.append(kw), with_kwargs=True)
    low = torch.rand(5, 1, 4, 4) * 2 - 1
    x = upscale(model, low, sampler="ddim", steps=3, aug_sigma=0.25, seed=1, batch_size=2)
    assert x.shape == (5, 1, 8, 8) and bool(torch.isfinite(x).all())
    assert all(torch.equal(kw["aug_level"], torch.full((kw["aug_level"].shape[0],), 0.25)) for kw in seen)
    # per-sample seeds: the same sample whatever the batch
    assert torch.allclose(x[3:], upscale(model, low[3:], sampler="ddim", steps=3, aug_sigma=0.25, seed=4), atol=1e-6)


def test_upscale_refuses_bad_inputs(sr_run, tiny_run):
    model, _ = load(sr_run)
    with pytest.raises(ValueError, match=r"low_res must have shape \(N, 1, 4, 4\)"):
        upscale(model, torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="NaN"):
        upscale(model, torch.full((1, 1, 4, 4), float("nan")))
    with pytest.raises(ValueError, match="aug_sigma"):
        upscale(model, torch.zeros(1, 1, 4, 4), aug_sigma=float("inf"))
    base, _ = load(tiny_run)
    with pytest.raises(ValueError, match="not a super-resolution model"):
        upscale(base, torch.zeros(1, 1, 4, 4))


def test_cascade_chains_base_samples_pooled_to_the_sr_input(sr_run, tiny_run):
    base, _ = load(tiny_run)
    sr, _ = load(sr_run)
    out = cascade(base, sr, 3, base_sampler="ddim", base_steps=2, sr_sampler="ddim", sr_steps=2, aug_sigma=0.1,
                  seed=2)
    assert out.base.shape == (3, 1, 8, 8) and out.low_res.shape == (3, 1, 4, 4) and out.samples.shape == (3, 1, 8, 8)
    assert torch.allclose(out.low_res, Downsample(2)(out.base.clamp(-1, 1)))


def test_cascade_cli_writes_pngs_and_a_grid(sr_run, tiny_run, tmp_path, capsys):
    from torchdiffusion.cli import main

    assert main(["cascade", str(tiny_run), str(sr_run), "--num", "3", "--out", str(tmp_path / "c"),
                 "--base-steps", "2", "--sr-steps", "2", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["aug_sigma"] == 0.1  # the SR run's superres.aug_sigma
    for stage in ("base", "low_res", "sr"):
        assert len(list((tmp_path / "c" / stage).glob("*.png"))) == 3
    assert (tmp_path / "c" / "grid.png").is_file()
    assert main(["cascade", str(sr_run), str(sr_run), "--out", str(tmp_path / "d")]) == 2
    assert "super-resolution model" in capsys.readouterr().err
    assert main(["cascade", str(tiny_run), str(tiny_run), "--out", str(tmp_path / "d")]) == 2
    assert "not a super-resolution model" in capsys.readouterr().err


def test_downsample_to_refuses_sizes_that_do_not_divide():
    assert downsample_to(torch.zeros(2, 1, 8, 8), 8).shape == (2, 1, 8, 8)
    with pytest.raises(ValueError, match="multiple of 3"):
        downsample_to(torch.zeros(2, 1, 8, 8), 3)


@pytest.mark.parametrize("change,match", [
    ({"model": {"params": {"low_res_size": 3}}}, "must divide image_size"),
    ({"model": {"params": {"low_res_upsample": "lanczos"}}}, "low_res_upsample must be one of"),
    ({"superres": {"aug_sigma_max": -0.1}}, "superres.aug_sigma_max: must be a finite number >= 0"),
    ({"superres": {"aug_sigma": float("nan")}}, "superres.aug_sigma: must be a finite number >= 0"),
    ({"superres": {"aug_sigma_max": 1e6}}, "TORCHDIFFUSION_NO_LIMITS"),
    ({"model": {"params": {"low_res_size": 0}}}, "apply to a super-resolution model only"),
    ({"superres": {"aug_level": 0.1}}, "aug_level"),
])
def test_config_errors_name_the_key(change, match):
    d = copy.deepcopy(SR)
    for section, values in change.items():
        if section == "model":
            d["model"]["params"].update(values["params"])
        else:
            d[section].update(values)
    with pytest.raises(ConfigError, match=match):
        make(d)


def test_a_dataset_the_low_res_size_does_not_divide_is_refused(tmp_path):
    d = copy.deepcopy(SR)
    d["model"]["params"].update(image_size=12, low_res_size=3)  # valid model, but digits are 8x8
    with pytest.raises(ConfigError, match="multiple of low_res_size"):
        Trainer(make(d), tmp_path, progress=False, quiet=True)


def test_a_saved_config_without_a_superres_section_reads_with_defaults():
    d = copy.deepcopy(SR)
    del d["superres"]
    assert make(d).superres.aug_sigma_max == 0.0


@pytest.mark.parametrize("name,size", [("fashion_mnist_sr7", 7), ("fashion_mnist_sr14", 14)])
def test_packaged_sr_configs_take_their_low_resolution(name, size):
    from torchdiffusion.build import build_model

    cfg = load_config(name)
    model, bcfg = build_model(cfg.model, cfg.process)
    assert bcfg.low_res_size == size and cfg.superres.aug_sigma_max > 0
    x = torch.zeros(2, 1, 28, 28)
    out = model(x, torch.full((2,), 1.0), low_res=torch.zeros(2, 1, size, size), aug_level=torch.zeros(2))
    assert out.shape == x.shape


def test_the_upscale_command_routes_through_an_sr_model(sr_run, tmp_path, capsys):
    """`upscale --sr-run SR_RUN`: the 4x4 input to the SR model's 8x8 output by `superres.upscale`, the same draws
    as the library call with the same seeds; a wrong input size, RUN with --sr-run, or a solve-route flag is one
    paragraph and exit status 2."""
    from torchdiffusion.cli import main
    from torchdiffusion.data.image_files import read_image, write_image

    g = torch.Generator().manual_seed(0)
    write_image(torch.rand(1, 4, 4, generator=g) * 2 - 1, tmp_path / "low.png")
    write_image(torch.rand(1, 2, 2, generator=g) * 2 - 1, tmp_path / "tiny.png")
    argv = ["upscale", "--sr-run", str(sr_run), "--image", str(tmp_path / "low.png"), "--num", "2", "--seed", "3",
            "--out", str(tmp_path / "out")]
    assert main(argv) == 0, capsys.readouterr().err
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["route"] == "sr_model" and out["factor"] == 2 and out["sampler"] == "ddim" and out["steps"] == 2
    got = torch.stack([read_image(f, (1, 8, 8)) for f in out["files"]])
    model, _ = load(sr_run)
    low = read_image(tmp_path / "low.png", (1, 4, 4))[None].expand(2, -1, -1, -1)
    want = upscale(model, low, sampler="ddim", steps=2, seed=3).clamp(-1, 1)
    assert (got - want).abs().max() <= 1.5 / 127.5  # 8-bit rounding of the PNG
    bad = [(["--image", str(tmp_path / "tiny.png")], r"tiny\.png is 2x2, but the SR model .* takes 4x4 inputs"),
           (["--image", str(tmp_path / "low.png"), "--factor", "4"], r"--factor 4 does not take this SR model's 4x4"),
           (["--image", str(tmp_path / "low.png"), "--method", "pigdm"], r"--method apply to posterior sampling"),
           (["--image", str(tmp_path / "low.png"), "--steps", "2", "--nfe", "4"], r"--steps or --nfe .* not both"),
           ([str(sr_run), "--image", str(tmp_path / "low.png")], r"not both: got RUN")]
    for extra, pattern in bad:
        code = main(["upscale", "--sr-run", str(sr_run), *extra, "--out", str(tmp_path / "bad")])
        err = capsys.readouterr().err
        assert code == 2 and re.search(pattern, err), (extra, err)
    code = main(["upscale", str(sr_run), "--image", str(tmp_path / "low.png"), "--aug-sigma", "0.1", "--out",
                 str(tmp_path / "bad")])
    assert code == 2 and "--aug-sigma apply to --sr-run" in capsys.readouterr().err
