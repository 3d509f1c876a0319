"""ControlNet (Zhang et al. 2023): the zero convolutions make the controlled model the base exactly at initialisation,
training moves only the ControlNet (the base bit for bit unchanged), scale 0 is the base, resume is exact, and bad
inputs are one-line errors (exit 2 from the CLI)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from torchdiffusion.cli import main
from torchdiffusion.controlnet import (ControlNet, control_image, controlled_denoiser, load_controlled_run,
                                       read_control_png)
from torchdiffusion.controlnet.conditions import shape_mask, sobel_edges
from torchdiffusion.controlnet.config import load_controlnet_config
from torchdiffusion.controlnet.train import ControlNetTrainer
from torchdiffusion.model_denoiser import ModelDenoiser
from torchdiffusion.nn.unet import UNet, UNetConfig
from torchdiffusion.processes import VPLinear

BASE = {
    "data": {"name": "shapes", "options": {"n": 64, "seed": 0, "size": 16}},
    "process": {"name": "ddpm", "schedule": "cosine", "T": 1000},
    "model": {"backbone": "unet", "prediction": "v",
              "params": {"in_channels": 3, "image_size": 16, "base_channels": 8, "channel_mult": [1, 2],
                         "num_res_blocks": 1, "attn_resolutions": [8], "num_heads": 2, "groups": 4}},
    "loss": {"kind": "simple"},
    "train": {"batch_size": 8, "lr": 1.0e-3, "max_steps": 2, "ckpt_every": 1, "sample_every": 0, "log_every": 1},
    "sample": {"sampler": "ddim", "steps": 4, "num": 4},
}
CONTROL = ["data.options.n=64", "data.options.size=16", "train.batch_size=4", "train.ckpt_every=2",
           "train.log_every=1", "train.lr=1e-3", "control.hint_channels=4"]


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A 16x16 shapes U-Net trained 2 steps, then with every parameter random (so its zero layers are not zero)."""
    from torchdiffusion.config import load_config
    from torchdiffusion.train.trainer import train

    out = tmp_path_factory.mktemp("base")
    (out / "base.yaml").write_text(yaml.safe_dump(BASE))
    train(load_config(out / "base.yaml"), out / "run", max_steps=2, progress=False, device="cpu")
    return out / "run"


def random_unet(seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    net = UNet(UNetConfig(in_channels=3, image_size=12, base_channels=8, channel_mult=(1, 2, 2), num_res_blocks=1,
                          attn_resolutions=(6,), num_heads=2, groups=4))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.15)
    return net.eval()


def randomise(module: torch.nn.Module, seed: int = 1) -> None:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.1)


@torch.no_grad()
def test_at_initialisation_the_controlled_model_is_the_base_exactly():
    base = ModelDenoiser(random_unet(), VPLinear(), "v")
    control = torch.rand(2, 1, 12, 12) * 2 - 1
    controlled = controlled_denoiser(base, ControlNet(base.backbone, 1, 4), control)
    x, sigma = torch.randn(2, 3, 12, 12) * 3, torch.tensor([0.5, 5.0])
    assert torch.equal(controlled(x, sigma), base(x, sigma))


@torch.no_grad()
def test_residuals_reach_every_skip_and_scale_zero_is_the_base():
    base = ModelDenoiser(random_unet(), VPLinear(), "v")
    net = ControlNet(base.backbone, 1, 4)
    randomise(net)  # as after training: the zero convolutions are no longer zero
    control = torch.rand(1, 1, 12, 12) * 2 - 1
    x, sigma = torch.randn(3, 3, 12, 12) * 3, torch.tensor([0.5, 2.0, 5.0])
    plain = base(x, sigma)
    assert torch.equal(controlled_denoiser(base, net, control, scale=0.0)(x, sigma), plain)
    steered = controlled_denoiser(base, net, control, scale=1.0)(x, sigma)
    assert not torch.allclose(steered, plain)
    res, mid = net(x, torch.rand(3), control.expand(3, -1, -1, -1))
    assert len(res) == 1 + 3 * 1 + 2 and mid.shape == (3, 16, 3, 3)  # conv_in, a block per level, 2 downsamplers


def test_the_control_images():
    x = -torch.ones(1, 3, 8, 8)
    x[:, 0, 2:5, 3:6] = 0.8  # a red square
    mask = shape_mask(x)
    assert mask.shape == (1, 1, 8, 8) and set(mask.unique().tolist()) == {-1.0, 1.0}
    assert int((mask > 0).sum()) == 9
    edges = sobel_edges(x)
    assert edges.max() == 1 and edges[0, 0, 3, 4] == -1 and edges[0, 0, 0, 0] == -1  # inside and far away: flat
    assert edges[0, 0, 2, 2] > -1  # the corner
    with pytest.raises(ValueError, match="mask, edges"):
        control_image(x, "depth")


def test_training_moves_only_the_controlnet_and_resume_is_exact(base_run, tmp_path):
    cfg = load_controlnet_config("shapes_controlnet", CONTROL)
    t = ControlNetTrainer(cfg, base_run, tmp_path / "a", progress=False, quiet=True)
    before = {k: v.clone() for k, v in t.base.model.backbone.state_dict().items()}
    zero_before = t.controlnet.zero_mid.weight.clone()
    t.run(max_steps=4)
    after = t.base.model.backbone.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(zero_before, t.controlnet.zero_mid.weight)  # the ControlNet did learn
    straight = {k: v.clone() for k, v in t.controlnet.state_dict().items()}

    t2 = ControlNetTrainer(cfg, base_run, tmp_path / "b", progress=False, quiet=True)
    t2.run(max_steps=2)
    del t2
    t3 = ControlNetTrainer(cfg, base_run, tmp_path / "b", progress=False, quiet=True)
    assert t3.step == 2
    t3.run(max_steps=4)
    resumed = t3.controlnet.state_dict()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_cli_train_and_sample_with_control(base_run, tmp_path, capsys):
    out = tmp_path / "cn"
    sets = [a for s in CONTROL for a in ("--set", s)]
    assert main(["train-controlnet", str(base_run), "shapes_controlnet", *sets, "--max-steps", "2", "--out", str(out),
                 "--no-progress"]) == 0
    from PIL import Image
    mask = np.zeros((16, 16), np.uint8)
    mask[2:8, 3:9] = 255
    png = tmp_path / "mask.png"
    Image.fromarray(mask).save(png)
    assert torch.equal(read_control_png(png, (16, 16)), torch.from_numpy(mask / 127.5 - 1).float()[None, None])
    capsys.readouterr()
    npz = {}
    for scale in ("0", "1"):
        npz[scale] = tmp_path / f"s{scale}.npz"
        assert main(["sample", str(out), "--control", str(png), "--control-scale", scale, "--num", "2", "--steps", "3",
                     "--npz", str(npz[scale])]) == 0
        assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["num"] == 2
    assert main(["sample", str(base_run), "--num", "2", "--steps", "3", "--npz", str(tmp_path / "base.npz")]) == 0
    base = np.load(tmp_path / "base.npz")["arr_0"]
    assert np.array_equal(np.load(npz["0"])["arr_0"], base)  # scale 0: the base model's samples exactly
    run = load_controlled_run(out)
    assert run.meta["kind"] == "controlnet" and run.data_shape == (3, 16, 16)


def test_bad_inputs_exit_2(base_run, tmp_path, capsys):
    sets = [a for s in CONTROL for a in ("--set", s)]
    out = tmp_path / "cn"
    assert main(["train-controlnet", str(tmp_path / "nothing"), "shapes_controlnet", *sets, "--max-steps", "1",
                 "--out", str(out)]) == 2
    assert "base run" in capsys.readouterr().err
    # a base that is not a U-Net
    dit = dict(BASE, model={"backbone": "dit", "prediction": "v",
                            "params": {"in_channels": 3, "image_size": 16, "patch_size": 4, "hidden_dim": 16,
                                       "depth": 1, "num_heads": 2}})
    (tmp_path / "dit.yaml").write_text(yaml.safe_dump(dit))
    assert main(["train", str(tmp_path / "dit.yaml"), "--max-steps", "1", "--out", str(tmp_path / "dit"),
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["train-controlnet", str(tmp_path / "dit"), "shapes_controlnet", *sets, "--max-steps", "1",
                 "--out", str(out)]) == 2
    assert "U-Net" in capsys.readouterr().err
    # data that does not fit the base
    assert main(["train-controlnet", str(base_run), "shapes_controlnet", *sets, "--set", "data.options.size=32",
                 "--max-steps", "1", "--out", str(out)]) == 2
    assert "16" in capsys.readouterr().err
    assert main(["train-controlnet", str(base_run), "shapes_controlnet", *sets, "--set", "control.kind=depth",
                 "--max-steps", "1", "--out", str(out)]) == 2
    # a control image of the wrong size, a missing one, and --control on a run that is not a ControlNet
    assert main(["train-controlnet", str(base_run), "shapes_controlnet", *sets, "--max-steps", "1",
                 "--out", str(out), "--no-progress"]) == 0
    from PIL import Image
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "small.png")
    capsys.readouterr()
    assert main(["sample", str(out), "--control", str(tmp_path / "small.png"), "--num", "1", "--steps", "2"]) == 2
    assert "8x8" in capsys.readouterr().err
    assert main(["sample", str(out), "--control", str(tmp_path / "none.png"), "--num", "1", "--steps", "2"]) == 2
    assert main(["sample", str(base_run), "--control", str(tmp_path / "small.png"), "--num", "1"]) == 2
    assert "not a ControlNet" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # argparse's own refusal
        main(["sample", str(base_run), "--cache-interval", "0", "--num", "1"])
    assert e.value.code == 2
    capsys.readouterr()
    assert main(["sample", str(base_run), "--cache-max-sigma", "5", "--num", "1"]) == 2
    assert "--cache-interval" in capsys.readouterr().err
    assert main(["sample", str(base_run), "--cache-interval", "2", "--cache-max-sigma", "-1", "--num", "1"]) == 2
    assert "max_sigma" in capsys.readouterr().err


def test_sample_with_step_caching(base_run, tmp_path, capsys):
    """sample --cache-interval 1 gives the plain model's samples exactly; 2 runs and reports itself."""
    paths = {}
    for n in (None, "1", "2"):
        paths[n] = tmp_path / f"c{n}.npz"
        extra = ["--cache-interval", n] if n else []
        assert main(["sample", str(base_run), "--num", "2", "--steps", "4", "--npz", str(paths[n]), *extra]) == 0
        last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert last.get("cache_interval") == (int(n) if n else None)
        if n:  # the base is a v model: capped at 1 sigma_data by default (step_cache.default_max_sigma)
            assert last["cache_max_sigma"] == 0.5
    main(["sample", str(base_run), "--num", "2", "--steps", "4", "--cache-interval", "2", "--cache-max-sigma", "3"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["cache_max_sigma"] == 3.0
    arr = {n: np.load(p)["arr_0"] for n, p in paths.items()}
    assert np.array_equal(arr[None], arr["1"])
