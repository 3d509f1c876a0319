"""Distilling a trained run into a run directory that `sample`, `eval` and `load` accept: the student's config
(its process, prediction and few-step sampler), checkpoints with exact resume, and the teacher named in metadata."""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..build import build_model
from ..config import ConfigError, RunConfig
from ..data import load_dataset
from ..loading import load_run
from ..train.checkpoint import Newest, checkpoint_path, optimizer_to_flat, save_and_prune, save_checkpoint
from ..train.resume import newest_to_resume, restore_optimizer, with_prefix
from .consistency import ConsistencyDistiller
from .loop import fit
from .progressive import ProgressiveDistiller
from .reflow import ReflowDistiller, draw_reflow_pairs

Tensor = torch.Tensor
METHODS = ("progressive", "consistency", "reflow")
SAMPLE_STEPS = {"progressive": 1, "consistency": 2, "reflow": 2}  # the student's default evaluations
DEFAULT_METHOD = "reflow"  # the lowest 2-evaluation map error of benchmarks/fewstep_gmm.py (docs/fewstep.md)


@dataclass
class DistillOptions:
    """What a distillation run is asked for; all but max_cpu_minutes are fixed when it starts (kept for resume)."""

    method: str = DEFAULT_METHOD
    max_steps: int = 2000              # the schedule's length: progressive rounds and EMA warm-up follow it
    batch_size: int = 128
    lr: float = 1e-4
    seed: int = 0
    start_steps: int = 64              # progressive: student steps of the first round (its teacher takes 2x), halved to 1
    levels: int = 18                   # consistency: Karras levels of the teacher's Heun steps
    pairs: int = 4096                  # reflow: (noise, sample) pairs drawn by the teacher
    pair_nfe: int = 35                 # reflow: the teacher's Heun calls per pair
    ckpt_every: int = 500

    def fixed(self) -> dict[str, Any]:
        """The options a resumed run must repeat: its method's own, and max_steps for progressive's rounds (the
        others may be resumed with more steps, as `train` may)."""
        own = {"progressive": ("max_steps", "start_steps"), "consistency": ("levels",), "reflow": ("pairs", "pair_nfe")}
        keys = ("method", "batch_size", "lr", "seed") + own[self.method]
        return {k: getattr(self, k) for k in keys}


def student_config(teacher: RunConfig, method: str, steps: int) -> RunConfig:
    """The teacher's config with the student's process, prediction and sampler: progressive keeps the teacher's
    parameterisation; consistency takes the boundary one; reflow is a linear flow predicting velocity."""
    cfg = copy.deepcopy(teacher)
    if method == "consistency":
        cfg.model.prediction = "consistency"
    elif method == "reflow":
        cfg.process.name, cfg.model.prediction = "flow", "velocity"
    cfg.sample.sampler = "consistency" if method == "consistency" else "ddim_fewstep"
    cfg.sample.steps, cfg.sample.options = steps, {}
    return cfg


def _data(cfg: RunConfig) -> tuple[Tensor, Tensor]:
    """The teacher's training data and labels (its config's dataset and limit)."""
    data, labels = load_dataset(cfg.data.name, **cfg.data.options)
    if cfg.data.limit:
        data, labels = data[: cfg.data.limit], labels[: cfg.data.limit]
    return data, labels


def _draw(cfg: RunConfig, data: Tensor, labels: Tensor, num_classes: int):
    """The teacher's data as a batch source: random items, their labels dropped to null at train.cond_drop."""

    def draw(n: int, g: torch.Generator) -> tuple[Tensor, dict[str, Tensor]]:
        i = torch.randint(0, len(data), (n,), generator=g)
        if not num_classes:
            return data[i], {}
        drop = torch.rand(n, generator=g) < cfg.train.cond_drop
        return data[i], {"class_labels": torch.where(drop, torch.full_like(labels[i], num_classes), labels[i])}

    return draw


def distill(teacher_path: str | Path, out: str | Path, options: DistillOptions, *,
            max_cpu_minutes: float | None = None, progress: bool = True) -> dict[str, Any]:
    """Distil the teacher run (its EMA weights) into `out` by options.method, resuming from out's newest checkpoint;
    returns the step reached, the checkpoint written and the student's sampler and steps."""
    if options.method not in METHODS:
        raise ValueError(f"unknown distillation method {options.method!r}; choose one of {', '.join(METHODS)}")
    cpu_start = time.process_time()  # the budget covers the whole command: loading, reflow's pairs, training
    out = Path(out)
    teacher_run = load_run(teacher_path)
    teacher, tcfg = teacher_run.model, teacher_run.config
    if tcfg.loss.kind == "classifier":
        raise ValueError(f"{teacher_path} is a noise-conditional classifier, not a diffusion model to distil")
    if getattr(teacher.backbone.config, "context_dim", 0):
        raise ValueError(f"{teacher_path} is text-conditional (its backbone attends to prompt embeddings, "
                         f"context_dim {teacher.backbone.config.context_dim}), and distill cannot condition a student "
                         f"on prompts: its teacher steps, reflow pairs and student would all need each item's "
                         f"caption embedded by the text encoder, which distillation does not run. distill supports "
                         f"unconditional and class-conditional teachers; sample this run with its own sampler at a "
                         f"low --steps instead (e.g. --sampler unipc --steps 8)")
    for p in teacher.parameters():
        p.requires_grad_(False)
    torch.manual_seed(options.seed)
    cfg = student_config(tcfg, options.method, SAMPLE_STEPS[options.method])
    student, bcfg = build_model(cfg.model, cfg.process)
    if options.method != "reflow" or (tcfg.process.name == "flow" and tcfg.model.prediction == "velocity"):
        student.backbone.load_state_dict(teacher.backbone.state_dict())  # the student starts as the teacher
    num_classes = int(getattr(bcfg, "num_classes", 0))
    gen = torch.Generator().manual_seed(options.seed + 1)
    data, labels = _data(tcfg)
    distiller = _make(options, teacher, student, out, num_classes, labels, tcfg.train.cond_drop)
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=options.lr)
    step = _resume(out, options, student, distiller, opt, gen)
    said = set(getattr(distiller, "snapshots", {}))

    def on_step(s: int, stats: dict[str, float]) -> None:
        if s % 50 == 0 or s == options.max_steps:
            with open(out / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"step": s, **stats}) + "\n")
        for n in set(getattr(distiller, "snapshots", {})) - said:  # a progressive round ended: keep its student
            said.add(n)
            _save_snapshot(out, cfg, bcfg, distiller, n, s)
        if s % options.ckpt_every == 0:
            _save(out, cfg, bcfg, student, distiller, opt, gen, s, options, teacher_path)

    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    if max_cpu_minutes:  # what is left of it; a tiny positive rest (not 0, which means "no budget") stops at once
        max_cpu_minutes = max(max_cpu_minutes - (time.process_time() - cpu_start) / 60, 1e-9)
    step = fit(distiller, _draw(tcfg, data, labels, num_classes), opt, total=options.max_steps, start=step,
               batch_size=options.batch_size, generator=gen, max_cpu_minutes=max_cpu_minutes, on_step=on_step,
               progress=progress)
    if step >= options.max_steps and isinstance(distiller, ProgressiveDistiller):
        distiller.finish()
        for n in set(distiller.snapshots) - said:
            _save_snapshot(out, cfg, bcfg, distiller, n, step)
    path = _save(out, cfg, bcfg, student, distiller, opt, gen, step, options, teacher_path)
    return {"step": step, "checkpoint": str(path), "method": options.method, "sampler": cfg.sample.sampler,
            "steps": cfg.sample.steps}


def _make(o: DistillOptions, teacher: Any, student: Any, out: Path, num_classes: int, labels: Tensor,
          cond_drop: float) -> Any:
    if o.method == "progressive":
        return ProgressiveDistiller(teacher, student, start_steps=o.start_steps)
    if o.method == "consistency":
        return ConsistencyDistiller(teacher, student, levels=o.levels)
    z, x1, y = _pairs(o, teacher, student, out, num_classes, labels)
    return ReflowDistiller((z, x1), student, labels=y, null_label=num_classes if num_classes else None,
                           cond_drop=cond_drop if num_classes else 0.0)


def _pairs(o: DistillOptions, teacher: Any, student: Any, out: Path, num_classes: int, labels: Tensor
           ) -> tuple[Tensor, Tensor, Tensor | None]:
    """The reflow pairs (z, x1, class labels or None), drawn once and kept in out. A class-conditional teacher's
    pairs are drawn per class, labels in proportion to the training data's label frequencies."""
    path = out / "reflow_pairs.safetensors"
    if path.is_file():
        t = load_file(str(path))
        if num_classes and "class_labels" not in t:
            raise ConfigError(f"{path} holds reflow pairs without class labels (drawn with the null label by an "
                              f"earlier version) for a class-conditional teacher; use a new --out")
        return t["z"], t["x1"], t.get("class_labels") if num_classes else None
    g = torch.Generator().manual_seed(o.seed + 2)
    shape = tuple(student.backbone.config.data_shape)
    probs = None
    if num_classes:
        known = labels[(labels >= 0) & (labels < num_classes)].long()
        if len(known) == 0:
            raise ValueError(f"the teacher's data has no labels in [0, {num_classes}) to draw reflow pairs per class")
        probs = torch.bincount(known, minlength=num_classes).double()
    z, x1, y = draw_reflow_pairs(teacher, o.pairs, shape, nfe=o.pair_nfe, generator=g, class_probs=probs)
    out.mkdir(parents=True, exist_ok=True)
    pairs = {"z": z.contiguous(), "x1": x1.contiguous()}
    if y is not None:
        pairs["class_labels"] = y.contiguous()
    save_file(pairs, str(path))
    return z, x1, y


def _tensors(student: Any, distiller: Any, opt: torch.optim.Optimizer, gen: torch.Generator
             ) -> tuple[dict[str, Tensor], dict[str, Any]]:
    tensors = {f"model.{k}": v for k, v in student.backbone.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in distiller.ema.backbone.state_dict().items()})
    opt_t, opt_meta = optimizer_to_flat(opt)
    extra, dmeta = distiller.state()
    tensors.update({**opt_t, **extra, "rng.distill": gen.get_state()})
    return tensors, {"optimizer": opt_meta, "distiller": dmeta}


def _save(out: Path, cfg: RunConfig, bcfg: Any, student: Any, distiller: Any, opt: torch.optim.Optimizer,
          gen: torch.Generator, step: int, o: DistillOptions, teacher_path: str | Path) -> Path:
    tensors, meta = _tensors(student, distiller, opt, gen)
    return save_and_prune(out, step, tensors, {"config": cfg.to_dict(), "backbone_config": bcfg.to_dict(),
                                               "step": step, "distill": {"teacher": str(teacher_path), **o.fixed(),
                                                                         **meta}}, 2, set())[0]


def _save_snapshot(out: Path, cfg: RunConfig, bcfg: Any, distiller: ProgressiveDistiller, n: int, step: int) -> None:
    """A progressive round's student as a checkpoint of its own: rounds/steps-N/ is a run `sample` reads."""
    scfg = copy.deepcopy(cfg)
    scfg.sample.steps = n
    run = out / "rounds" / f"steps-{n}"
    tensors = {f"ema.{k}": v for k, v in distiller.snapshots[n].items()}
    tensors.update({f"model.{k}": v.clone() for k, v in distiller.snapshots[n].items()})
    save_checkpoint(checkpoint_path(run, step), tensors, {"config": scfg.to_dict(),
                                                          "backbone_config": bcfg.to_dict(), "step": step})


def _refusal(out: Path, found: Newest) -> str:
    """Why a distillation with unreadable checkpoints is not resumed (distill has no --restart)."""
    return (f"{out}: checkpoints that cannot be read ({'; '.join(map(str, found.unreadable))}); "
            f"move them aside or use a new --out")


def _resume(out: Path, o: DistillOptions, student: Any, distiller: Any, opt: torch.optim.Optimizer,
            gen: torch.Generator) -> int:
    """The step of out's newest checkpoint, with every state restored (0 for a new run)."""
    if not out.exists():
        return 0
    found = newest_to_resume(out, _refusal)  # as `train`: never resume past (or start over) an unreadable checkpoint
    if found is None:
        return 0
    saved = found.meta.get("distill")
    if not isinstance(saved, dict) or saved.get("method") not in METHODS:
        raise ConfigError(f"{out} holds a run that `distill` did not write; use a new --out directory")
    fixed = {k: saved.get(k) for k in DistillOptions(method=saved["method"]).fixed()}
    if fixed != o.fixed():
        diffs = ", ".join(f"{k}: saved {fixed.get(k)} vs now {v}" for k, v in o.fixed().items() if fixed.get(k) != v)
        raise ConfigError(f"{out} was distilled with other options ({diffs}); repeat them or use a new --out")
    t = found.tensors
    student.backbone.load_state_dict(with_prefix(t, "model."))
    distiller.ema.backbone.load_state_dict(with_prefix(t, "ema."))
    distiller.load_state(t, saved["distiller"])
    restore_optimizer(opt, t, saved["optimizer"])
    gen.set_state(t["rng.distill"])
    return int(found.meta["step"])
