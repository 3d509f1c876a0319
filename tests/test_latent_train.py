"""train-autoencoder resumes exactly and switches its discriminator on after the warm-up; a tiny autoencoder ->
latent diffusion -> sample run works end to end; bad inputs are one error and exit status 2."""

import json

import numpy as np
import pytest
import torch
import yaml

from torchdiffusion.cli import main
from torchdiffusion.config import ConfigError, load_config
from torchdiffusion.latent import AutoencoderTrainer, LatentTrainer, load_autoencoder, load_autoencoder_config
from torchdiffusion.train.checkpoint import CheckpointError, load_checkpoint, read_checkpoint

AE_TINY = {
    "data": {"name": "digits", "limit": 64},
    "model": {"kind": "kl", "image_size": 8, "base_channels": 8, "channel_mult": [1, 2], "z_channels": 2,
              "num_codes": 16, "restart_below": 0.05},
    "loss": {"disc_start": 2, "disc_channels": 8, "disc_layers": 1},
    "train": {"batch_size": 8, "ckpt_every": 3, "log_every": 1, "sample_every": 0, "keep_last": 5, "lr": 1e-3},
}
LDM_TINY = {
    "data": {"name": "digits", "limit": 64},
    "process": {"name": "ddpm", "schedule": "cosine", "T": 50},
    "model": {"backbone": "unet", "prediction": "v",
              "params": {"in_channels": 2, "image_size": 4, "base_channels": 8, "channel_mult": [1],
                         "num_res_blocks": 1, "num_heads": 2}},
    "train": {"batch_size": 8, "lr": 1e-3, "warmup_steps": 2, "ckpt_every": 2, "log_every": 1, "sample_every": 2,
              "precision": "fp32"},
    "sample": {"sampler": "ddim", "steps": 3, "num": 4},
}


def write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def ae_config(tmp_path, **sections):
    data = json.loads(json.dumps(AE_TINY))
    for key, value in sections.items():
        data[key].update(value)
    return load_autoencoder_config(write(tmp_path / "ae.yaml", data))


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory):
    """A KL autoencoder run trained for 4 steps (the GAN on from step 3)."""
    out = tmp_path_factory.mktemp("ae")
    cfg = write(out / "ae.yaml", AE_TINY)
    assert main(["train-autoencoder", str(cfg), "--max-steps", "4", "--out", str(out / "run"), "--no-progress"]) == 0
    return out / "run"


@pytest.mark.parametrize("kind", ["kl", "vq"])
def test_interrupted_and_resumed_autoencoder_training_equals_uninterrupted(tmp_path, kind):
    cfg = ae_config(tmp_path, model={"kind": kind})
    AutoencoderTrainer(cfg, tmp_path / "straight", progress=False, device="cpu", quiet=True).run(max_steps=6)
    AutoencoderTrainer(cfg, tmp_path / "split", progress=False, device="cpu", quiet=True).run(max_steps=3)
    AutoencoderTrainer(cfg, tmp_path / "split", progress=False, device="cpu", quiet=True).run(max_steps=6)
    a, _ = load_checkpoint(tmp_path / "straight/checkpoints/ckpt-00000006.safetensors")
    b, _ = load_checkpoint(tmp_path / "split/checkpoints/ckpt-00000006.safetensors")
    assert a.keys() == b.keys() and any(k.startswith("disc_optim.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    log = lambda d: [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert log(tmp_path / "straight") == log(tmp_path / "split")


def test_discriminator_is_switched_on_at_disc_start(tmp_path):
    cfg = ae_config(tmp_path, loss={"disc_start": 2})
    t = AutoencoderTrainer(cfg, tmp_path / "run", progress=False, device="cpu", quiet=True)
    d0 = {k: v.clone() for k, v in t.disc.state_dict().items()}
    steps = [t.train_step() for _ in range(2)]
    assert all(s["gan"] == 0.0 and "g_loss" not in s for s in steps)
    assert all(torch.equal(d0[k], v) for k, v in t.disc.state_dict().items())  # untouched during the warm-up
    s = t.train_step()
    assert s["gan"] == 1.0 and s["adaptive_weight"] > 0 and "d_loss" in s
    assert any(not torch.equal(d0[k], v) for k, v in t.disc.state_dict().items())
    t.files.release()
    off = AutoencoderTrainer(ae_config(tmp_path, loss={"disc_start": 0, "disc_weight": 0.0}), tmp_path / "off",
                             progress=False, device="cpu", quiet=True)
    assert off.train_step()["gan"] == 0.0  # disc_weight 0: never on
    off.files.release()


def test_vq_run_reports_code_usage(tmp_path):
    t = AutoencoderTrainer(ae_config(tmp_path, model={"kind": "vq"}), tmp_path / "vq", progress=False,
                           device="cpu", quiet=True)
    s = t.train_step()
    t.files.release()
    assert 1.0 <= s["perplexity"] <= 16 and 0 < s["code_usage"] <= 1 and s["commitment"] >= 0


def test_autoencoder_latent_model_and_samples_end_to_end(tmp_path, ae_run, capsys):
    ae = load_autoencoder(ae_run)
    assert not ae.training and ae.config.latent_shape == (2, 4, 4)
    ldm = write(tmp_path / "ldm.yaml", LDM_TINY)
    run = tmp_path / "ldm"
    assert main(["train", str(ldm), "--set", f"autoencoder={ae_run}", "--max-steps", "2", "--out", str(run),
                 "--no-progress"]) == 0
    assert (run / "samples" / "step-00000002.png").is_file()  # decoded tiles
    _, tensors, meta = read_checkpoint(run)
    from torchdiffusion.data import load_dataset
    images = load_dataset("digits")[0][:64]
    with torch.no_grad():
        z = ae.encode(images)
    assert meta["latent"]["scale"] == pytest.approx(float(z.double().std()), rel=1e-5)
    assert meta["latent"]["latent_shape"] == [2, 4, 4] and meta["latent"]["image_shape"] == [1, 8, 8]
    capsys.readouterr()
    npz = tmp_path / "s.npz"
    assert main(["sample", str(run), "--num", "3", "--steps", "2", "--npz", str(npz), "--tiles",
                 str(tmp_path / "s.png")]) == 0
    assert np.load(npz)["arr_0"].shape == (3, 8, 8, 1)  # images, not latents
    from torchdiffusion.loading import load_run
    loaded = load_run(run)
    assert loaded.data_shape == (2, 4, 4) and loaded.decode(torch.zeros(1, 2, 4, 4)).shape == (1, 1, 8, 8)
    # resuming keeps the measured scale and the data, so the run continues exactly
    t = LatentTrainer(load_config(ldm, [f"autoencoder={ae_run}"]), run, progress=False, device="cpu", quiet=True)
    assert t.step == 2 and t.codec.scale == meta["latent"]["scale"]
    torch.testing.assert_close(t.data, z / t.codec.scale)
    assert float(t.data.std()) == pytest.approx(1.0, rel=1e-4)
    t.close()


def test_eval_decodes_a_latent_model(tmp_path, ae_run):
    from torchdiffusion.evaluate.report import EvalOptions, evaluate_run
    from torchdiffusion.latent import train_latent

    cfg = load_config(write(tmp_path / "ldm.yaml", LDM_TINY), [f"autoencoder={ae_run}", "train.sample_every=0"])
    train_latent(cfg, tmp_path / "ldm", max_steps=1, progress=False, device="cpu")
    feats = tmp_path / "f.safetensors"
    from torchdiffusion.metrics.features import FeatureNet, FeatureNetConfig, save_feature_net
    save_feature_net(FeatureNet(FeatureNetConfig(width=4, feature_dim=8)), feats)
    report = evaluate_run(tmp_path / "ldm", EvalOptions(num=4, samplers=["ddim"], nfe=[2], metrics=["fid"],
                                                          features=str(feats), plots=False, progress=False))
    assert report["latent"]["latent_shape"] == [2, 4, 4] and report["results"][0]["fid"] >= 0
    with pytest.raises(ValueError, match="latent"):
        evaluate_run(tmp_path / "ldm", EvalOptions(num=4, samplers=["ddim"], nfe=[2], metrics=["bpd"],
                                                   plots=False, progress=False))


def test_bad_latent_inputs_exit_2(tmp_path, ae_run, capsys):
    ldm = write(tmp_path / "ldm.yaml", LDM_TINY)
    out = str(tmp_path / "x")
    cases = [
        (["train", str(ldm), "--set", f"autoencoder={tmp_path / 'missing'}", "--out", out], "does not exist"),
        (["train", str(ldm), "--set", f"autoencoder={ae_run}", "--set", "model.params.in_channels=3", "--out", out],
         "in_channels=2"),
        (["train", str(ldm), "--set", f"autoencoder={ae_run}", "--set", "data.name=textures", "--out", out],
         "takes images of shape"),
        (["train-autoencoder", str(write(tmp_path / "ae.yaml", AE_TINY)), "--set", "model.in_channels=3", "--out",
          out], "make them match"),
        (["train-autoencoder", str(tmp_path / "ae.yaml"), "--set", "loss.disc_loss=wgan", "--out", out], "hinge"),
        (["train-autoencoder", str(tmp_path / "ae.yaml"), "--set", "model.kind=gan", "--out", out], "kind"),
        (["train-autoencoder", str(tmp_path / "ae.yaml"), "--set", "loss.perceptual_weight=1", "--out", out],
         "perceptual_features"),
        (["train-autoencoder", str(tmp_path / "ae.yaml"), "--set", "loss.perceptual_weight=1", "--set",
          f"loss.perceptual_features={tmp_path / 'no.safetensors'}", "--out", out], "no such file"),
        (["train-autoencoder", str(tmp_path / "ae.yaml"), "--set", "train.bogus=1", "--out", out], "train.bogus"),
    ]
    for argv, words in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err, (argv, err)


def test_mismatched_runs_are_refused(tmp_path, ae_run):
    from torchdiffusion.train.trainer import Trainer

    cfg = load_config(write(tmp_path / "ldm.yaml", LDM_TINY), [f"autoencoder={ae_run}"])
    with pytest.raises(ConfigError, match="LatentTrainer"):
        Trainer(cfg, tmp_path / "plain", progress=False, device="cpu")
    pixel = load_config(write(tmp_path / "px.yaml", {**LDM_TINY, "model": {**LDM_TINY["model"], "params": {
        **LDM_TINY["model"]["params"], "in_channels": 1, "image_size": 8}}}))
    from torchdiffusion.train.trainer import train
    train(pixel, tmp_path / "px", max_steps=1, progress=False, device="cpu")
    with pytest.raises(CheckpointError, match="not an autoencoder"):
        load_autoencoder(tmp_path / "px")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_autoencoder(tmp_path / "nowhere")
    # an autoencoder run resumed by another kind of autoencoder config
    with pytest.raises(CheckpointError, match="different config"):
        AutoencoderTrainer(ae_config(tmp_path, model={"kind": "vq"}), ae_run, progress=False, device="cpu")
    # a latent model resumed on the latents of another autoencoder checkpoint
    other = tmp_path / "other_ae"
    AutoencoderTrainer(ae_config(tmp_path, train={"seed": 5}), other, progress=False, device="cpu",
                       quiet=True).run(max_steps=1)
    latent = tmp_path / "latent"
    LatentTrainer(cfg, latent, progress=False, device="cpu", quiet=True).run(max_steps=1)
    with pytest.raises(CheckpointError, match="another autoencoder"):
        LatentTrainer(load_config(tmp_path / "ldm.yaml", [f"autoencoder={other}"]), latent, progress=False,
                      device="cpu")
