"""End-to-end checks that take minutes: `make test-slow`."""

import json

import pytest
import torch

pytestmark = pytest.mark.slow


def test_demo_trains_digits_a_classifier_recognises(tmp_path, capsys):
    """The demo's samples are digits: in the feature space of a classifier trained on MNIST they lie far closer to
    held-out real digits than an untrained model's samples do, and at least nine of the ten classes make over 2 % of
    them."""
    from torchdiffusion.build import build_model
    from torchdiffusion.cli import main
    from torchdiffusion.loading import load_run
    from torchdiffusion.data import load_mnist
    from torchdiffusion.generate import generate
    from torchdiffusion.metrics import fid_from_features, train_feature_net

    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (tmp_path / "demo" / "samples.png").is_file()
    model, cfg = load_run(out["checkpoint"]).model, load_run(out["checkpoint"]).config
    x, _ = generate(model, (1, 28, 28), 500, sampler="ddim", steps=50, seed=1)
    fresh, _ = build_model(cfg.model, cfg.process)  # what "not digits" scores with the same instrument
    x_fresh, _ = generate(fresh, (1, 28, 28), 500, sampler="ddim", steps=50, seed=1)
    xs, ys = load_mnist()
    torch.manual_seed(0)
    clf = train_feature_net(xs[:4500], ys[:4500], epochs=3)  # the last 500 images are held out
    held_out = clf.embed(xs[4500:])
    with torch.no_grad():
        held_out_accuracy = (clf(xs[4500:]).argmax(1) == ys[4500:]).double().mean().item()
        labels = clf(x.clamp(-1, 1)).argmax(1)
    fid = fid_from_features(clf.embed(x.clamp(-1, 1)), held_out)
    fid_fresh = fid_from_features(clf.embed(x_fresh.clamp(-1, 1)), held_out)
    fid_real = fid_from_features(clf.embed(xs[:500]), held_out)  # the floor: 500 real training digits
    shares = torch.bincount(labels, minlength=10).double() / len(labels)
    print(f"demo FID {fid:.2f}, untrained {fid_fresh:.2f}, real {fid_real:.2f}; held-out accuracy "
          f"{held_out_accuracy:.3f}; class shares {[round(v, 3) for v in shares.tolist()]}")
    assert held_out_accuracy > 0.85, held_out_accuracy  # the instrument reads digits it never saw
    assert fid < fid_fresh / 4, (fid, fid_fresh)
    # at most one digit rare (a 5.5-minute model under-draws the thin 1: 0.4 % in one run), none dominating
    assert (shares > 0.02).sum() >= 9 and shares.max() < 0.3, shares


def test_toy2d_run_matches_the_data_distribution(tmp_path):
    """A trained 2-D model's samples are close to the data in sliced Wasserstein distance."""
    from torchdiffusion.cli import main
    from torchdiffusion.loading import load_run
    from torchdiffusion.data import load_dataset
    from torchdiffusion.generate import generate

    assert main(["train", "toy2d", "--out", str(tmp_path / "toy"), "--no-progress"]) == 0
    run = load_run(tmp_path / "toy")
    model, cfg = run.model, run.config
    x, _ = generate(model, (2,), 4000, sampler="ddim", steps=100, seed=0)
    data, _ = load_dataset("toy:moons", n=4000, seed=123)
    g = torch.Generator().manual_seed(0)
    dirs = torch.nn.functional.normalize(torch.randn(64, 2, generator=g), dim=1)
    sw = (torch.sort(x @ dirs.T, 0).values - torch.sort(data @ dirs.T, 0).values).abs().mean().item()
    shuffled = torch.randn(4000, 2, generator=g) * data.std(0) + data.mean(0)
    sw_gauss = (torch.sort(shuffled @ dirs.T, 0).values - torch.sort(data @ dirs.T, 0).values).abs().mean().item()
    assert sw < 0.05 and sw < sw_gauss / 4, (sw, sw_gauss)
