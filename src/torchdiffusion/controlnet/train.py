"""Training a ControlNet on a frozen base run (Zhang et al. 2023, eq. 3): the base's own denoising target with the
control image derived from each training image; only the ControlNet's weights move. Checkpoints, lock and resume
are the train/ package's (train/resume.ResumableRun); the base run is named in every checkpoint and loaded from there to sample."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from ..data import load_dataset
from ..loading import LoadedRun, load_run
from ..nn.unet import UNet
from ..train.checkpoint import CheckpointError, first_line, read_checkpoint
from ..train.resume import ResumableRun, with_prefix
from ..train.trainer import TrainingDivergedError
from ..typed_dict import ConfigError
from .conditions import control_image
from .config import ControlNetRunConfig
from .model import ControlNet, controlled_denoiser

Tensor = torch.Tensor
RUN_KIND = "controlnet"
FROZEN = ("data", "control")  # must not change when a run is resumed


def load_base(base_run: str | Path, device: torch.device | str = "cpu") -> LoadedRun:
    """The frozen base: a trained pixel-space U-Net run (its EMA weights, the ones it samples with)."""
    try:
        base = load_run(base_run, device=device)
    except CheckpointError as e:
        raise CheckpointError(f"base run {base_run}: {first_line(e)}") from None
    if not isinstance(base.model.backbone, UNet):
        raise ConfigError(f"base run {base_run} has a {base.config.model.backbone} backbone; ControlNet copies a "
                          "U-Net's encoder, so the base must be a U-Net run")
    if base.codec is not None:
        raise ConfigError(f"base run {base_run} is a latent model; ControlNet here steers pixel-space U-Nets only")
    base.model.requires_grad_(False)
    return base


class ControlNetTrainer(ResumableRun):
    """One ControlNet run: build or resume from run_dir's newest checkpoint (holding its lock), then `run()`."""

    RUN_KIND, FROZEN = RUN_KIND, FROZEN  # the module's names
    WHAT, DESC, FITS, KEEP = "a ControlNet", "controlnet", "ControlNet", "the original base and config"

    def __init__(self, cfg: ControlNetRunConfig, base_run: str | Path, run_dir: str | Path, *,
                 progress: bool = True, quiet: bool = False, restart: bool = False):
        self.cfg, self.run_dir, self.progress, self.quiet = cfg, Path(run_dir), progress, quiet
        self.base_run = str(Path(base_run).resolve())
        tc = cfg.train
        if tc.num_threads:
            torch.set_num_threads(tc.num_threads)
        torch.manual_seed(tc.seed)
        self.base = load_base(base_run)
        unet = self.base.model.backbone
        try:
            images, _ = load_dataset(cfg.data.name, **cfg.data.options)
        except TypeError as e:
            raise ConfigError(f"data.options {cfg.data.options} do not fit dataset {cfg.data.name!r}: {e}") from None
        if cfg.data.limit:
            images = images[: cfg.data.limit]
        want = tuple(unet.config.data_shape)
        if images.ndim != 4 or tuple(images.shape[1:]) != want:
            raise ConfigError(f"dataset {cfg.data.name!r} has items of shape {tuple(images.shape[1:])} but the base "
                              f"model makes {want}; set data.options (e.g. size) to match the base")
        self.images, self.controls = images, control_image(images, cfg.control.kind)
        self.controlnet = ControlNet(unet, 1, cfg.control.hint_channels)
        self.model = controlled_denoiser(self.base.model, self.controlnet)
        self.opt = torch.optim.Adam(self.controlnet.parameters(), lr=tc.lr)
        self.open_run(len(self.images), torch.device("cpu"), restart)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"controlnet": self.controlnet}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optim": self.opt}

    def extra_meta(self) -> dict[str, Any]:
        return {"base_run": self.base_run, "base_checkpoint": self.base.meta["path"],
                "base_step": self.base.meta["step"]}

    def extra_diffs(self, meta: dict[str, Any]) -> list[str]:
        """The base must be the very checkpoint the ControlNet was trained on."""
        if meta.get("base_checkpoint") != self.base.meta["path"]:
            return [f"base: saved {meta.get('base_checkpoint')} vs now {self.base.meta['path']}"]
        return []

    def summary(self) -> dict[str, Any]:
        return {"base_run": self.base_run}

    def next_batch(self, n: int) -> tuple[Tensor, Tensor]:
        """(images, their control images) in a per-epoch permutation, so the position is two integers."""
        i = self.next_indices(n)
        return self.images[i], self.controls[i]

    def train_step(self) -> dict[str, float]:
        """||raw(x_t, t, control) - target||^2 at t uniform on the base's time range (Zhang et al. 2023, eq. 3)."""
        tc, model = self.cfg.train, self.model
        x0, c = self.next_batch(tc.batch_size)
        p = model.process
        t = p.t_min + (p.t_max - p.t_min) * torch.rand(x0.shape[0], generator=self.noise_gen, dtype=torch.float64)
        t = model.net_time(t)
        eps = torch.randn(x0.shape, generator=self.noise_gen)
        xt = p.marginal(x0, t, eps).to(x0.dtype)
        out = model.raw(xt, t, control=c)
        if model.learned_variance:
            out = out.chunk(2, dim=1)[0]
        loss = (out - model.training_target(x0, eps, xt, t)).square().mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise TrainingDivergedError(f"non-finite ControlNet loss {value} at step {self.step + 1}; stopped without "
                                        "saving this step; lower train.lr")
        gn = torch.nn.utils.clip_grad_norm_(self.controlnet.parameters(),
                                            tc.grad_clip if tc.grad_clip > 0 else float("inf"))
        self.opt.step()
        self.step += 1
        return {"loss": value, "grad_norm": float(gn)}


def train_controlnet(cfg: ControlNetRunConfig, base_run: str | Path, run_dir: str | Path, *,
                     max_steps: int | None = None, max_cpu_minutes: float | None = None, progress: bool = True,
                     restart: bool = False) -> dict[str, Any]:
    """Train (or resume) a ControlNet on the frozen base run; returns the final step, checkpoint path and seconds."""
    return ControlNetTrainer(cfg, base_run, run_dir, progress=progress, restart=restart).run(
        max_steps=max_steps, max_cpu_minutes=max_cpu_minutes)


def load_controlled_run(path: str | Path, control: Tensor | None = None, scale: float = 1.0,
                        device: str | torch.device = "cpu") -> LoadedRun:
    """A ControlNet run (or checkpoint) with its base, as a LoadedRun whose model is the controlled Denoiser."""
    ckpt, tensors, meta = read_checkpoint(Path(path))
    if meta.get("controlnet") and meta.get("kind") != RUN_KIND:
        return _controlled_student(ckpt, tensors, meta, control, scale, device)
    if meta.get("kind") != RUN_KIND:
        raise CheckpointError(f"{ckpt} is not a ControlNet checkpoint (train one with `torchdiffusion "
                              "train-controlnet BASE_RUN CONFIG --out DIR`)")
    base = load_base(meta["base_run"], device)
    hint = int(meta["config"]["control"]["hint_channels"])
    controlnet = ControlNet(base.model.backbone, 1, hint)
    try:
        controlnet.load_state_dict(with_prefix(tensors, "controlnet."))
    except RuntimeError as e:
        raise CheckpointError(f"{ckpt}: its ControlNet does not fit the base {meta['base_run']} "
                              f"({first_line(e)})") from None
    model = controlled_denoiser(base.model, controlnet.to(device), control, scale).eval()
    return LoadedRun(model, base.config, {**meta, "path": str(ckpt)}, None)


def _controlled_student(ckpt: Path, tensors: dict[str, Tensor], meta: dict[str, Any], control: Tensor | None,
                        scale: float, device: str | torch.device) -> LoadedRun:
    """A distilled student of a ControlNet run (`torchdiffusion distill`): its base and ControlNet both trained, held
    in the checkpoint ("ema.base.", "ema.controlnet."), its config the student's."""
    from ..build import build_model
    from ..config import RunConfig, from_dict, migrate

    try:
        cfg = from_dict(RunConfig, migrate(meta["config"]))
        layout = meta["controlnet"]
        base, _ = build_model(cfg.model, cfg.process)
        net = ControlNet(base.backbone, int(layout["control_channels"]), int(layout["hint_channels"]))
        model = controlled_denoiser(base, net, control, scale)
        model.backbone.load_state_dict(with_prefix(tensors, "ema."))
    except (ConfigError, KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{ckpt}: a distilled ControlNet student that does not load ({first_line(e)})") from None
    return LoadedRun(model.eval().to(device), cfg, {**meta, "path": str(ckpt)}, None)
