"""The editing commands end to end on the tiny trained run: PNGs of the model's size out, a grid and settings.json,
the same seed giving the same images, measurements kept (inpainting's observed pixels, super-resolution's block
averages), and bad inputs answered with one paragraph and exit status 2."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from torchdiffusion.cli import main
from torchdiffusion.data.image_files import read_image, write_image

NFE = ["--nfe", "8"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Two 8 x 8 grey images, a 2 x 2 low-resolution one, a mask (left half kept) and a text file."""
    d = tmp_path_factory.mktemp("images")
    g = torch.Generator().manual_seed(0)
    for name in ("a", "b"):
        write_image(torch.rand(1, 8, 8, generator=g) * 2 - 1, d / f"{name}.png")
    write_image(torch.rand(1, 2, 2, generator=g) - 0.5, d / "low.png")
    mask = np.zeros((8, 8), np.uint8)
    mask[:, :4] = 255
    Image.fromarray(mask).save(d / "mask.png")
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(d / "small.png")
    (d / "notes.txt").write_text("not an image")
    return d


def run(argv, capsys):
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def pixels(path):
    return np.asarray(Image.open(path))


COMMANDS = {
    "inpaint": lambda d: ["--image", str(d / "a.png"), "--mask", str(d / "mask.png"), "--method", "replacement"],
    "img2img": lambda d: ["--image", str(d / "a.png"), "--strength", "0.5"],
    "restore": lambda d: ["--image", str(d / "a.png"), "--operator", "blur:1", "--simulate", "--noise-std", "0.05"],
    "upscale": lambda d: ["--image", str(d / "low.png"), "--factor", "4"],
    "invert": lambda d: ["--image", str(d / "a.png")],
    "interpolate": lambda d: ["--a", str(d / "a.png"), "--b", str(d / "b.png"), "--num", "3"],
}
SEEDED = ("inpaint", "img2img", "restore", "upscale")


@pytest.mark.parametrize("command", list(COMMANDS))
def test_each_command_writes_model_size_pngs_a_grid_and_its_settings(command, tiny_run, images, tmp_path, capsys):
    extra = ["--num", "2"] if command in SEEDED else []
    argv = [command, str(tiny_run), *COMMANDS[command](images), *NFE, *extra]
    first = run([*argv, "--out", str(tmp_path / "one")], capsys)
    files = first["files"]
    assert len(files) == {"invert": 1, "interpolate": 3}.get(command, 2)
    for f in files:
        assert pixels(f).shape == (8, 8)  # the model's size, grey
    assert Image.open(first["grid"]).format == "PNG"
    saved = json.loads((tmp_path / "one" / "settings.json").read_text())
    assert saved["command"] == command and saved["checkpoint"] == first["checkpoint"] and saved["files"] == files
    again = run([*argv, "--out", str(tmp_path / "two")], capsys)
    for f, g in zip(files, again["files"]):
        assert np.array_equal(pixels(f), pixels(g))  # same settings, same images
    if command in SEEDED:
        other = run([*argv, "--seed", "5", "--out", str(tmp_path / "three")], capsys)
        assert not all(np.array_equal(pixels(f), pixels(g)) for f, g in zip(files, other["files"]))


def test_a_result_does_not_depend_on_how_many_are_drawn(tiny_run, images, tmp_path, capsys):
    argv = ["restore", str(tiny_run), *COMMANDS["restore"](images), *NFE]
    three = run([*argv, "--num", "3", "--out", str(tmp_path / "three")], capsys)["files"]
    one = run([*argv, "--num", "1", "--out", str(tmp_path / "one")], capsys)["files"]
    assert np.array_equal(pixels(one[0]), pixels(three[0]))


@pytest.mark.parametrize("method", ["replacement", "repaint", "ddrm"])
def test_inpainting_keeps_the_observed_pixels(method, tiny_run, images, tmp_path, capsys):
    out = run(["inpaint", str(tiny_run), *COMMANDS["inpaint"](images)[:4], "--method", method, *NFE, "--num", "2",
               "--out", str(tmp_path)], capsys)
    given = pixels(images / "a.png").astype(int)
    for f in out["files"]:
        got = pixels(f).astype(int)
        assert np.abs(got[:, :4] - given[:, :4]).max() <= 1  # white = kept, up to rounding
        assert not np.array_equal(got[:, 4:], given[:, 4:])  # the black half is drawn by the model
    assert out["observed_fraction"] == 0.5


def test_upscaling_keeps_the_block_averages(tiny_run, images, tmp_path, capsys):
    """Noise-free DDRM lands on A x = y: the draws (before the PNG's clipping to [-1, 1]) average back to the input
    over 4 x 4 blocks; the command writes them at the model's size."""
    from torchdiffusion.inverse import Downsample, solve
    from torchdiffusion.loading import load

    out = run(["upscale", str(tiny_run), "--image", str(images / "low.png"), *NFE, "--num", "2", "--out",
               str(tmp_path)], capsys)
    assert out["factor"] == 4 and out["method"] == "ddrm" and pixels(out["files"][0]).shape == (8, 8)
    model, _ = load(tiny_run)
    low = read_image(images / "low.png", (1, 2, 2))[None].expand(2, -1, -1, -1)
    draws = solve(model, low, Downsample(4), noise_std=0.0, method="ddrm", nfe=8,
                  generator=[torch.Generator().manual_seed(i) for i in range(2)])
    torch.testing.assert_close(Downsample(4)(draws), low, atol=1e-4, rtol=0)


def test_inversion_writes_its_noise_and_error(tiny_run, images, tmp_path, capsys):
    out = run(["invert", str(tiny_run), "--image", str(images / "a.png"), "--nfe", "10", "--out", str(tmp_path)],
              capsys)
    noise = np.load(out["noise"])["arr_0"]
    assert noise.shape == (1, 1, 8, 8) and np.isfinite(noise).all()
    assert 0 <= out["rms_error"] < 10


BAD = [
    (lambda d: ["inpaint", "--image", str(d / "nope.png"), "--mask-preset", "centre"], r"image .*nope\.png does not exist"),
    (lambda d: ["inpaint", "--image", str(d / "notes.txt"), "--mask-preset", "centre"], r"not an image file Pillow can read"),
    (lambda d: ["inpaint", "--image", str(d / "a.png"), "--mask", str(d / "small.png")], r"mask .*small\.png is 5x5 .* model takes 8x8 .*--resize"),
    (lambda d: ["inpaint", "--image", str(d / "a.png"), "--mask-preset", "circle"], r"unknown mask preset 'circle'; choose one of centre"),
    (lambda d: ["img2img", "--image", str(d / "a.png"), "--strength", "1.5"], r"--strength must lie in \(0, 1\]"),
    (lambda d: ["img2img", "--image", str(d / "a.png"), "--strength", "0"], r"--strength must lie in \(0, 1\]"),
    (lambda d: ["restore", "--image", str(d / "a.png"), "--operator", "sharpen:2"], r"unknown operator 'sharpen:2'; give one of: blur"),
    (lambda d: ["restore", "--image", str(d / "a.png"), "--operator", "blur:x"], r"operator 'blur:x': give blur:STD"),
    (lambda d: ["restore", "--image", str(d / "a.png"), "--operator", "downsample:4"], r"image .*a\.png is 8x8 .* model takes 2x2"),
    (lambda d: ["restore", "--image", str(d / "a.png"), "--operator", "blur:1", "--method", "magic"], r"unknown inverse method 'magic'"),
    (lambda d: ["restore", "--image", str(d / "a.png"), "--operator", "blur:1", "--option", "zeta=1"], r"unknown option.*zeta.*'ddrm'"),
    (lambda d: ["upscale", "--image", str(d / "small.png")], r"small\.png is 5x5, not the model's 8x8 divided by a whole factor"),
    (lambda d: ["upscale", "--image", str(d / "low.png"), "--factor", "3"], r"--factor 3 does not divide the model's image size 8x8"),
    (lambda d: ["interpolate", "--a", str(d / "a.png"), "--b", str(d / "b.png"), "--num", "1"], r"--num must be >= 2"),
    (lambda d: ["invert", "--image", str(d / "a.png"), "--class-label", "3"], r"not class-conditional"),
]


@pytest.mark.parametrize("case", range(len(BAD)))
def test_bad_inputs_get_one_paragraph_and_exit_2(case, tiny_run, images, tmp_path, capsys):
    import re

    argv, pattern = BAD[case]
    args = argv(images)
    assert main([args[0], str(tiny_run), *args[1:], *NFE, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"torchdiffusion {args[0]}: error: ") and "Traceback" not in err, err
    assert err.count("\n") == 1 and re.search(pattern, err), err


def test_a_mask_must_be_given_once(tiny_run, images, tmp_path):
    with pytest.raises(SystemExit) as e:  # argparse's own usage error
        main(["inpaint", str(tiny_run), "--image", str(images / "a.png"), "--out", str(tmp_path)])
    assert e.value.code == 2


def test_a_guidance_recipe_repeats_each_row_for_particles():
    from torchdiffusion.conditioning import GuidanceRecipe

    r = GuidanceRecipe(cond={"class_labels": torch.tensor([0, 1])}, uncond={"class_labels": torch.tensor([9, 9])},
                       scale=2.0).repeat_rows(3)
    assert r.cond["class_labels"].tolist() == [0, 0, 0, 1, 1, 1] and r.uncond["class_labels"].tolist() == [9] * 6
    r.check_rows(6)
