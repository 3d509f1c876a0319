"""Loading a run for use (`torchdiffusion.load`), old saved configs, `--device` and the per-device bf16 choice."""

import json

import pytest
import torch
import yaml

import torchdiffusion as td
from torchdiffusion.cli import main
from torchdiffusion.config import load_config
from torchdiffusion.devices import bf16_supported, resolve_device, uses_bf16
from torchdiffusion.loading import load_run
from torchdiffusion.train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint

from test_train_cli import TINY

no_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")




def test_load_gives_the_ema_denoiser_and_its_config(tiny_run):
    model, cfg = td.load(tiny_run)
    tensors, meta = load_checkpoint(list_checkpoints(tiny_run)[-1])
    assert isinstance(model, td.ModelDenoiser) and not model.training
    assert cfg.to_dict() == meta["config"]
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, tensors[f"ema.{k}"])
    raw, _ = td.load(tiny_run, raw_weights=True)
    assert any(not torch.equal(v, tensors[f"ema.{k}"]) for k, v in raw.backbone.state_dict().items())
    assert load_run(tiny_run).data_shape == (1, 8, 8)


def test_a_checkpoint_saved_with_the_old_sample_eta_key_loads(tiny_run, tmp_path):
    tensors, meta = load_checkpoint(list_checkpoints(tiny_run)[-1])
    old = json.loads(json.dumps(meta["config"]))
    old["sample"].pop("options")
    old["sample"]["eta"] = 0.3  # how sessions before the sampler-options registry saved DDIM's eta
    path = save_checkpoint(tmp_path / "ckpt-00000002.safetensors", tensors,
                           {k: v for k, v in meta.items() if k not in ("format_version", "content_hash")} |
                           {"config": old})
    _, cfg = td.load(path)
    assert cfg.sample.options == {"eta": 0.3}


@pytest.mark.parametrize("command", ["train", "sample", "eval", "demo"])
def test_help_shows_device(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "--device" in capsys.readouterr().out


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("tpu", "gpu0", "mps"):
        with pytest.raises(ValueError, match="device"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda:0")
    cpu = torch.device("cpu")
    assert isinstance(bf16_supported(cpu), bool)
    assert uses_bf16("bf16", cpu) == bf16_supported(cpu) and not uses_bf16("fp32", cpu)  # asked for and native


def test_sample_on_a_bad_device_is_one_line_and_exit_2(tiny_run, capsys):
    assert main(["sample", str(tiny_run), "--num", "2", "--device", "tpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("torchdiffusion sample: error: unknown device 'tpu'") and "\n" not in err


def test_sampler_options_from_the_cli_are_checked_against_the_sampler(tiny_run, capsys):
    assert main(["sample", str(tiny_run), "--num", "2", "--sampler", "ddim", "--option", "etta=0.5"]) == 2
    err = capsys.readouterr().err
    assert "etta" in err and "its options are: eta" in err
    assert main(["sample", str(tiny_run), "--num", "2", "--steps", "2", "--sampler", "euler_ancestral",
                 "--option", "s_noise=0.5", "--eta", "0.5"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["options"] == {"s_noise": 0.5, "eta": 0.5}


@no_cuda
def test_train_sample_and_load_on_cuda(tiny_run, tmp_path, capsys):
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(TINY))
    assert main(["train", str(cfg_path), "--max-steps", "2", "--out", str(tmp_path / "gpu"), "--device", "cuda",
                 "--no-progress"]) == 0
    assert main(["sample", str(tmp_path / "gpu"), "--num", "2", "--steps", "2", "--device", "cuda"]) == 0
    model, _ = td.load(tmp_path / "gpu", device="cuda")
    assert next(model.parameters()).is_cuda
    assert bf16_supported(torch.device("cuda")) == torch.cuda.is_bf16_supported()


def test_a_run_config_with_an_unknown_sampler_option_is_refused():
    from torchdiffusion.config import ConfigError

    with pytest.raises(ConfigError, match=r"sample.options: unknown option\(s\) etta for sampler 'ddim'"):
        load_config(None, ["sample.sampler=ddim", "sample.options={etta: 0.5}"])


def test_a_yaml_config_with_the_old_sample_eta_key_still_loads(tmp_path):
    p = tmp_path / "old.yaml"
    p.write_text(yaml.safe_dump({"sample": {"sampler": "ddim", "steps": 3, "eta": 0.5}}))
    assert load_config(p).sample.options == {"eta": 0.5}
    p.write_text(yaml.safe_dump({"sample": {"sampler": "ipndm", "eta": 0.0}}))  # the old default: no option
    assert load_config(p).sample.options == {}
