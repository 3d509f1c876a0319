"""Editing a latent diffusion model: img2img, invert and interpolate encode the image, edit the latent and decode;
inpaint replaces latent cells under the min-pooled mask and keeps the observed pixels; restore and upscale (pixel
measurements of the decoded image) sample by latent DPS through the decoder, and refuse the linear methods with exit
status 2, in the CLI and in the web UI alike."""

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from test_latent_train import AE_TINY, LDM_TINY
from torchdiffusion.cli import main
from torchdiffusion.inverse import latent_inpaint, latent_mask
from torchdiffusion.loading import load_run


@pytest.fixture(scope="module")
def ldm_run(tmp_path_factory):
    """A tiny latent model (digits 8x8x1 -> 4x4x2 latents) in a folder of its own, named "ldm"."""
    out = tmp_path_factory.mktemp("latent_edit")
    (out / "ae.yaml").write_text(yaml.safe_dump(AE_TINY))
    (out / "ldm.yaml").write_text(yaml.safe_dump({**LDM_TINY, "train": {**LDM_TINY["train"], "sample_every": 0}}))
    assert main(["train-autoencoder", str(out / "ae.yaml"), "--max-steps", "2", "--out", str(out / "ae"),
                 "--no-progress"]) == 0
    runs = out / "runs"
    assert main(["train", str(out / "ldm.yaml"), "--set", f"autoencoder={out / 'ae'}", "--max-steps", "2",
                 "--out", str(runs / "ldm"), "--no-progress"]) == 0
    img = np.zeros((8, 8), np.uint8)
    img[2:6, 3:5] = 255
    Image.fromarray(img).save(out / "a.png")
    Image.fromarray(255 - img).save(out / "b.png")
    return runs / "ldm"


def settings(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_latent_mask_is_observed_only_where_the_whole_patch_is():
    mask = torch.ones(3, 4, 4)
    mask[1, 0, 1] = 0  # one pixel of one channel missing: the top-left 2x2 cell is missing
    mask[:, 3, 3] = 0
    cells = latent_mask(mask, (2, 2, 2))
    assert torch.equal(cells, torch.tensor([[1.0, 1.0], [1.0, 1.0]]).sub(torch.tensor([[1.0, 0], [0, 1.0]]))
                       .expand(2, 2, 2))
    with pytest.raises(ValueError, match="does not tile"):
        latent_mask(torch.ones(1, 5, 5), (2, 2, 2))


class PoolCodec:
    """A codec of 2x2 block means and nearest upsampling: decode(encode(x)) is x where x is blockwise constant."""

    def encode(self, x):
        return torch.nn.functional.avg_pool2d(x, 2)

    def decode(self, z):
        return torch.nn.functional.interpolate(z, scale_factor=2, mode="nearest")


def test_latent_inpaint_keeps_observed_pixels_and_fills_missing_cells_from_the_model():
    class Constant:  # a denoiser that always predicts 0.5, to tell filled cells from kept ones
        sigma_min, sigma_max = 0.002, 80.0

        def __call__(self, x, sigma, **cond):
            return torch.full_like(x, 0.5)

    x = torch.linspace(-1, 1, 16).reshape(1, 1, 4, 4)
    mask = torch.ones(1, 4, 4)
    mask[0, 0, 0] = 0  # one missing pixel: its whole 2x2 cell is regenerated
    out = latent_inpaint(Constant(), PoolCodec(), x, mask, method="replacement", nfe=4,
                         generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[0, 0][mask[0] == 1], x[0, 0][mask[0] == 1])  # observed pixels pasted back exactly
    assert out[0, 0, 0, 0] == pytest.approx(0.5, abs=1e-5)  # the filled pixel comes from the model's latent


def test_img2img_invert_and_interpolate_edit_the_latent_and_decode(ldm_run, tmp_path, capsys):
    a, b = ldm_run.parent.parent / "a.png", ldm_run.parent.parent / "b.png"
    loaded = load_run(ldm_run)
    x = torch.from_numpy(np.array(Image.open(a))).float().div(127.5).sub(1)[None, None]
    assert main(["img2img", str(ldm_run), "--image", str(a), "--strength", "0.1", "--nfe", "2", "--num", "2",
                 "--out", str(tmp_path / "i2i")]) == 0
    s = settings(capsys)
    assert len(s["files"]) == 2
    # strength near 0: the edit is near the image's latent decoded (the autoencoder's reconstruction), which an
    # autoencoder trained 2 steps puts far from the image itself
    got = np.asarray(Image.open(s["files"][0]), np.float64)
    want = loaded.decode(loaded.codec.encode(x))[0, 0].clamp(-1, 1).add(1).mul(127.5).numpy()
    image = np.asarray(Image.open(a), np.float64)
    assert got.shape == (8, 8) and np.abs(got - want).mean() < 0.2 * np.abs(got - image).mean()
    assert main(["invert", str(ldm_run), "--image", str(a), "--nfe", "3", "--out", str(tmp_path / "inv")]) == 0
    s = settings(capsys)
    assert np.load(s["noise"])["arr_0"].shape == (1, 2, 4, 4)  # the latent's noise
    assert {"latent_rms_error", "autoencoder_rms_error", "rms_error"} <= set(s)
    assert Image.open(s["files"][0]).size == (8, 8)
    assert main(["interpolate", str(ldm_run), "--a", str(a), "--b", str(b), "--num", "3", "--nfe", "2",
                 "--out", str(tmp_path / "itp")]) == 0
    assert [Image.open(f).size for f in settings(capsys)["files"]] == [(8, 8)] * 3


def test_inpaint_on_a_latent_model_keeps_the_observed_pixels(ldm_run, tmp_path, capsys):
    a = ldm_run.parent.parent / "a.png"
    assert main(["inpaint", str(ldm_run), "--image", str(a), "--mask-preset", "center", "--nfe", "4", "--num", "2",
                 "--out", str(tmp_path / "inp")]) == 0
    s = settings(capsys)
    assert s["latent"].startswith("replacement") and 0 < s["observed_latent_fraction"] < 1
    from torchdiffusion.inverse import mask_preset
    kept = mask_preset("center", (1, 8, 8))[0].bool().numpy()
    src = np.asarray(Image.open(a))
    for f in s["files"]:
        assert np.array_equal(np.asarray(Image.open(f))[kept], src[kept])
    assert main(["inpaint", str(ldm_run), "--image", str(a), "--mask-preset", "center", "--noise-std", "0.1",
                 "--out", str(tmp_path / "noisy")]) == 2
    assert "no counterpart on the latent grid" in capsys.readouterr().err


def misfit(files, op, y):
    """Mean over result PNGs of ||A x - y|| (x read back in [-1, 1])."""
    xs = torch.stack([torch.from_numpy(np.asarray(Image.open(f), np.float64)).div(127.5).sub(1)[None] for f in files])
    return float((op(xs) - y.double()).flatten(1).norm(dim=1).mean())


@pytest.mark.parametrize("argv", [["restore", "--operator", "blur:3:1", "--simulate"],
                                  ["upscale", "--factor", "2", "--resize"]])
def test_restore_and_upscale_a_latent_model_by_latent_dps(ldm_run, tmp_path, capsys, argv):
    """Latent DPS is the default: PNGs at the image size whose measurement fits y better than the unguided draws of
    the same seeds (zeta = 0: DPS without its likelihood step is DDPM's ancestral sampler); a linear method exits 2."""
    from torchdiffusion.inverse import Blur, Downsample, gaussian_kernel

    a = ldm_run.parent.parent / "a.png"
    base = [argv[0], str(ldm_run), "--image", str(a), *argv[1:], "--nfe", "20", "--num", "3"]
    assert main([*base, "--out", str(tmp_path / "dps")]) == 0
    s = settings(capsys)
    assert s["method"] == "dps" and s["latent"].startswith("latent DPS") and len(s["files"]) == 3
    assert [Image.open(f).size for f in s["files"]] == [(8, 8)] * 3
    assert main([*base, "--option", "zeta=0", "--out", str(tmp_path / "free")]) == 0
    free = settings(capsys)
    image = torch.from_numpy(np.asarray(Image.open(a), np.float64)).div(127.5).sub(1)[None, None]
    op = Blur(gaussian_kernel(3, 1.0)) if argv[0] == "restore" else Downsample(2)
    y = op(image)
    # measured 0.91 of the unguided misfit on both: a decoder trained 2 steps cannot do much better (its own
    # reconstruction of the image misfits y by 5.6 (blur) and 3.3 (2x), the unguided draws by 5.7 and 3.5)
    assert misfit(s["files"], op, y) < 0.95 * misfit(free["files"], op, y), (misfit(s["files"], op, y),
                                                                             misfit(free["files"], op, y))
    assert main([*base, "--method", "ddrm", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "latent diffusion model" in err and "not linear in the latent" in err and "--method dps" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_the_web_ui_draws_and_edits_latent_models_as_the_cli_does(ldm_run):
    pytest.importorskip("gradio")
    from torchdiffusion.ui.draw import draw
    from torchdiffusion.ui.edit import edit
    from torchdiffusion.ui.runs import Models

    models = Models(ldm_run.parent)
    images, _ = draw(models, "ldm", sampler="ddim", steps=2, seed=0, batch=2)  # the Generate tab decodes too
    assert [im.size for im in images] == [(8, 8)] * 2
    img = np.zeros((8, 8), np.uint8)
    img[4:] = 255
    y, out, s = edit(models, "ldm", "img2img", img, strength=0.5, nfe=2, count=2)
    assert len(out) == 2 and all(o.size == (8, 8) for o in out)
    layer = np.zeros((8, 8, 4), np.uint8)
    layer[:, :4, 3] = 255  # left half missing
    y, out, s = edit(models, "ldm", "inpaint", img, painted=[layer], method="replacement", nfe=3, count=2)
    assert s["latent"].startswith("replacement")
    for o in out:
        assert np.array_equal(np.asarray(o)[:, 4:], img[:, 4:])
    for task in ("upscale", "restore"):  # latent DPS, as the CLI; a linear method refused with the CLI's reason
        y, out, s = edit(models, "ldm", task, img, method="dps", nfe=3, count=2)
        assert s["latent"].startswith("latent DPS") and [o.size for o in out] == [(8, 8)] * 2
        with pytest.raises(ValueError, match="latent diffusion model.*not linear in the latent"):
            edit(models, "ldm", task, img, method="ddrm", nfe=2)
    with pytest.raises(ValueError, match="noise std to 0"):
        edit(models, "ldm", "inpaint", img, painted=[layer], noise_std=0.1, nfe=2)


@pytest.mark.parametrize("command", ["sample", "img2img"])
@pytest.mark.parametrize("flags, message", [(["--threshold", "dynamic"], "not pixels in"),
                                            (["--classifier", "CLF"], "classifier of its latents")])
def test_guidance_that_assumes_pixels_is_refused_on_a_latent_model(ldm_run, tmp_path, capsys, command, flags,
                                                                   message):
    a = ldm_run.parent.parent / "a.png"
    args = ["--num", "2", "--steps", "2"] if command == "sample" else ["--image", str(a), "--strength", "0.5",
                                                                         "--out", str(tmp_path / "o")]
    flags = [str(ldm_run) if f == "CLF" else f for f in flags]
    assert main([command, str(ldm_run), *args, *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
