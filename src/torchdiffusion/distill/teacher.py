"""A teacher run as distillation needs it: its denoiser, config, training data in the model's space (a latent
teacher's scaled latents) and the conditioning `train` fed it (class labels, captions embedded once by the text
encoder, a super-resolution model's noise-augmented low-resolution input, a ControlNet's control images), plus what
its student's checkpoints must carry to sample like it (a latent codec, a ControlNet's layout)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..build import build_model
from ..config import RunConfig
from ..data import load_dataset
from ..loading import load_run
from ..train.checkpoint import content_hash, read_checkpoint

Tensor = torch.Tensor


@dataclass
class TeacherData:
    """The teacher's training items in the model's space and their conditioning, made as `Trainer.condition` makes
    it: labels and captions dropped to null at cond_drop (Ho & Salimans 2022), a super-resolution model's low_res
    noise-augmented and never dropped (Ho et al. 2021, sec. 3.2), a ControlNet's control image never dropped."""

    data: Tensor                     # (N, ...) in the model's space
    labels: Tensor                   # (N,)
    num_classes: int = 0             # > 0: class-conditional, label num_classes is the null label
    cond_drop: float = 0.0
    captions: Any = None             # text.context.CaptionContext of the items (text-conditional teachers)
    low_res_size: int = 0            # > 0: super-resolution (SR3) from x0 average-pooled to this side
    aug_sigma_max: float = 0.0
    controls: Tensor | None = None   # (N, 1, H, W) a ControlNet teacher's control images

    def condition(self, idx: Tensor, x0: Tensor, generator: torch.Generator, drop: bool = True
                  ) -> dict[str, Tensor]:
        """The model kwargs of items idx (B,) whose data are x0; drop=False keeps every condition (reflow's pairs)."""
        cond: dict[str, Tensor] = {}
        if self.low_res_size:
            from ..inverse.superres import training_condition

            cond.update(training_condition(x0, self.low_res_size, self.aug_sigma_max, generator))
        if self.controls is not None:
            cond["control"] = self.controls[idx]
        if self.num_classes:
            cond["class_labels"] = self.labels[idx]
        return self.redrop(cond, idx, generator) if drop else self.with_captions(cond, idx, None)

    def redrop(self, cond: dict[str, Tensor], idx: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        """cond with its class labels, and the captions of items idx, each dropped to null at cond_drop."""
        cond = dict(cond)
        if self.num_classes:
            y = cond["class_labels"]
            drop = torch.rand(y.shape, generator=generator) < self.cond_drop
            cond["class_labels"] = torch.where(drop, torch.full_like(y, self.num_classes), y)
        drop = torch.rand(idx.shape, generator=generator) < self.cond_drop if self.captions is not None else None
        return self.with_captions(cond, idx, drop)

    def with_captions(self, cond: dict[str, Tensor], idx: Tensor, drop: Tensor | None) -> dict[str, Tensor]:
        if self.captions is None:
            return cond
        return {**cond, **self.captions.rows(idx, drop)}

    def draw(self, n: int, generator: torch.Generator) -> tuple[Tensor, dict[str, Tensor]]:
        """n random items and their (dropped) conditioning: the batch source of `loop.fit`."""
        idx = torch.randint(0, len(self.data), (n,), generator=generator)
        x0 = self.data[idx]
        return x0, self.condition(idx, x0, generator)


@dataclass
class Teacher:
    """A loaded teacher: the denoiser (EMA weights), the RunConfig of its model, its data, and the extra tensors and
    metadata a student's checkpoint carries to load and sample as the teacher does."""

    model: Any
    config: RunConfig
    data: TeacherData
    extra_tensors: dict[str, Tensor] = field(default_factory=dict)  # a latent teacher's autoencoder
    extra_meta: dict[str, Any] = field(default_factory=dict)        # "latent" / "controlnet"

    @property
    def controlnet(self) -> dict[str, Any] | None:
        """A ControlNet teacher's layout (hint_channels, control_channels, kind), else None."""
        return self.extra_meta.get("controlnet")

    def build_student(self, cfg: RunConfig) -> tuple[Any, Any]:
        """(student ModelDenoiser, backbone config) of the student config: a ControlNet teacher's student is a
        controlled U-Net, base and ControlNet both trained (the control still enters through the zero convs)."""
        student, bcfg = build_model(cfg.model, cfg.process)
        if self.controlnet:
            from ..controlnet import ControlNet, controlled_denoiser

            c = self.controlnet
            net = ControlNet(student.backbone, int(c["control_channels"]), int(c["hint_channels"]))
            student = controlled_denoiser(student, net)
            student.requires_grad_(True)
        return student, bcfg


def fingerprint(model: torch.nn.Module) -> str:
    """A short content hash of a model's weights (`train.checkpoint.content_hash`: names, dtypes, shapes, bytes), so a
    resumed distillation can tell that its teacher is the one it started from."""
    return content_hash({k: v.detach().cpu() for k, v in model.state_dict().items()})[:16]


def _images(cfg_data: Any) -> tuple[Tensor, Tensor]:
    data, labels = load_dataset(cfg_data.name, **cfg_data.options)
    if cfg_data.limit:
        data, labels = data[: cfg_data.limit], labels[: cfg_data.limit]
    return data, labels


def load_teacher(path: str | Path) -> Teacher:
    """The teacher run (or checkpoint) at path: a plain, latent, text-, class- or low-resolution-conditional run, a
    ControlNet run (with its frozen base), or an earlier distilled student."""
    _, tensors, meta = read_checkpoint(Path(path))
    if meta.get("kind") == "controlnet" or meta.get("controlnet"):
        return _controlnet_teacher(path, meta)
    run = load_run(path)
    cfg, model = run.config, run.model
    if cfg.loss.kind == "classifier":
        raise ValueError(f"{path} is a noise-conditional classifier, not a diffusion model to distil")
    images, labels = _images(cfg.data)
    extra_t: dict[str, Tensor] = {}
    extra_m: dict[str, Any] = {}
    if run.codec is not None:  # a latent teacher: distil on its latents, keep its autoencoder for decoding
        data = run.codec.encode(images)
        extra_t = {k: v for k, v in tensors.items() if k.startswith("autoencoder.")}
        extra_m = {"latent": copy.deepcopy(meta["latent"])}
    else:
        data = images
    return Teacher(model, cfg, _data(cfg, model, data, labels), extra_t, extra_m)


def _data(cfg: RunConfig, model: Any, data: Tensor, labels: Tensor, controls: Tensor | None = None) -> TeacherData:
    bcfg = model.backbone.config
    captions = None
    if getattr(bcfg, "context_dim", 0):  # captions embedded once, as `train` does
        from ..data import load_captions
        from ..text.context import CaptionContext

        captions = CaptionContext(load_captions(cfg.data.name, **cfg.data.options)[: len(data)])
    num_classes = int(getattr(bcfg, "num_classes", 0) or 0)
    if num_classes:
        known = labels[(labels >= 0) & (labels < num_classes)]
        if len(known) != len(labels):
            raise ValueError(f"the teacher's data ({cfg.data.name!r}) has labels outside [0, {num_classes}), the "
                             f"classes its model is conditioned on; distillation draws its conditions from them")
    return TeacherData(data, labels, num_classes, float(cfg.train.cond_drop), captions,
                       int(getattr(bcfg, "low_res_size", 0) or 0), float(cfg.superres.aug_sigma_max), controls)


def _controlnet_teacher(path: str | Path, meta: dict[str, Any]) -> Teacher:
    """A ControlNet run: its controlled denoiser at scale 1, the base's config, the ControlNet config's data and the
    control images derived from them as in its training (`controlnet.control_image`)."""
    from ..config import from_dict
    from ..controlnet import control_image, load_controlled_run
    from ..controlnet.config import ControlNetRunConfig

    run = load_controlled_run(path)
    if meta.get("kind") == "controlnet":  # trained by train-controlnet: its own data and control kind
        ccfg = from_dict(ControlNetRunConfig, meta["config"])
        data_cfg, kind = ccfg.data, ccfg.control.kind
        layout = {"hint_channels": int(ccfg.control.hint_channels), "control_channels": 1, "kind": kind}
    else:  # an earlier distilled student of one
        layout = dict(meta["controlnet"])
        data_cfg, kind = run.config.data, layout["kind"]
    cfg = copy.deepcopy(run.config)
    cfg.data = copy.deepcopy(data_cfg)
    images, labels = _images(data_cfg)
    controls = control_image(images, kind)
    return Teacher(run.model, cfg, _data(cfg, run.model, images, labels, controls), {}, {"controlnet": layout})
