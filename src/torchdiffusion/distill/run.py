"""Distilling a trained run into a run directory that `sample`, `eval` and `load` accept: the student's config
(its process, prediction and few-step sampler), checkpoints with exact resume, and the teacher named in metadata."""

from __future__ import annotations

import copy
import json
import re
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..config import ConfigError, RunConfig
from ..devices import uses_bf16
from ..losses.consistency import DISTANCES
from ..registry import BACKBONES, SAMPLERS
from ..train.checkpoint import Newest, checkpoint_path, optimizer_to_flat, save_and_prune, save_checkpoint
from ..train.resume import config_diffs, newest_to_resume, restore_optimizer, with_prefix
from .consistency import ConsistencyDistiller
from .loop import fit
from .progressive import ProgressiveDistiller
from .reflow import ReflowDistiller, reflow_pairs
from .teacher import TeacherData, fingerprint, load_teacher

Tensor = torch.Tensor
METHODS = ("progressive", "consistency", "reflow")
SAMPLE_STEPS = {"progressive": 1, "consistency": 2, "reflow": 2}  # the student's default evaluations
PAIR_SAMPLERS = tuple(n for n in SAMPLERS.names() if SAMPLERS[n].kind == "ODE" and SAMPLERS[n].grid != "fewstep")
DEFAULT_METHOD = "reflow"  # the lowest 2-evaluation map error of benchmarks/fewstep_gmm.py (docs/fewstep.md)


@dataclass
class DistillOptions:
    """What a distillation run is asked for; all but max_cpu_minutes are fixed when it starts (kept for resume)."""

    method: str = DEFAULT_METHOD
    max_steps: int = 2000              # the schedule's length: progressive rounds and EMA warm-up follow it
    batch_size: int = 128
    lr: float = 1e-4
    seed: int = 0
    start_steps: int = 64              # progressive: the first round's teacher steps (its student takes half)
    levels: int = 18                   # consistency: Karras levels of the teacher's Heun steps
    pairs: int = 8192                  # reflow: (noise, sample) pairs drawn by the teacher, out of the CPU budget;
                                       # the students memorise a small set (docs/fewstep.md)
    pair_share: float = 0.5            # reflow: with a CPU budget, the pairs stop at this share of it (fewer than
                                       # `pairs` on a slower CPU), so training keeps the rest (docs/fewstep.md)
    pair_nfe: int = 35                 # reflow: the teacher's calls per pair
    pair_sampler: str = "unipc"        # reflow: the teacher's ODE sampler for its pairs (better pairs than Heun's
                                       # at the same calls; docs/fewstep.md)
    grid_share: float = 1.0            # reflow: share of each batch at the levels of the grid_steps grids
    rollout: float = 1.0               # reflow: share of those (below sigma_max) at the student's own sampler state,
                                       # so a later call learns to correct the earlier ones (docs/fewstep.md)
    grid_steps: str = "1,2"            # reflow: the few-step grids whose levels grid_share trains (the 1- and 2-call
                                       # students the issue asks for; docs/fewstep.md)
    distance: str = "l2"               # reflow: l2 | pseudo_huber of the backbone's output
    conic: float = 0.0                 # reflow: share of the angle each pair's noise turns towards fresh noise
    dropout: float = 0.0               # the student's backbone dropout while it trains (a U-Net's ResBlocks)
    ckpt_every: int = 500

    def fixed(self) -> dict[str, Any]:
        """The options a resumed run must repeat: its method's own, and max_steps for progressive's rounds (the
        others may be resumed with more steps, as `train` may)."""
        own = {"progressive": ("max_steps", "start_steps"), "consistency": ("levels",),
               "reflow": ("pairs", "pair_nfe", "pair_sampler", "grid_share", "rollout", "grid_steps", "distance",
                          "conic")}
        keys = ("method", "batch_size", "lr", "seed", "dropout") + own[self.method]
        return {k: getattr(self, k) for k in keys}

    def grid_step_counts(self) -> tuple[int, ...]:
        """grid_steps ("1,2") as step counts (1, 2); a malformed text is a ValueError."""
        if not re.fullmatch(r"[1-9]\d*(,[1-9]\d*)*", self.grid_steps):
            raise ValueError(f"grid_steps must be comma-separated step counts like '1,2,4', got {self.grid_steps!r}")
        return tuple(int(n) for n in self.grid_steps.split(","))


def student_config(teacher: RunConfig, method: str, steps: int, dropout: float = 0.0) -> RunConfig:
    """The teacher's config with the student's process, prediction and sampler: progressive keeps the teacher's
    parameterisation; consistency takes the boundary one; reflow keeps the teacher's too (it starts as the teacher).
    dropout is the student backbone's, whatever the teacher's was (no weights of its own, so the teacher's still
    load; off when sampled); dropout > 0 on a backbone without dropout layers is a ValueError."""
    cfg = copy.deepcopy(teacher)
    if "dropout" in {f.name for f in fields(BACKBONES.lookup(cfg.model.backbone).config_class)}:
        cfg.model.params = {**cfg.model.params, "dropout": dropout}
    elif dropout:
        raise ValueError(f"dropout needs a backbone with dropout layers (unet); the teacher's {cfg.model.backbone!r} "
                         f"has none")
    if method == "consistency":
        cfg.model.prediction = "consistency"
    cfg.sample.sampler = "consistency" if method == "consistency" else "ddim_fewstep"
    cfg.sample.steps, cfg.sample.options = steps, {}
    return cfg


def distill(teacher_path: str | Path, out: str | Path, options: DistillOptions, *,
            max_cpu_minutes: float | None = None, progress: bool = True) -> dict[str, Any]:
    """Distil the teacher run (its EMA weights) into `out` by options.method, resuming from out's newest checkpoint;
    returns the step reached, the checkpoint written and the student's sampler and steps. The teacher's conditioning
    (class labels, captions, a low-resolution input, a control image) is made from its data as `train` makes it and
    passed to its steps, to reflow's pairs and to the student (`teacher.TeacherData`). A teacher trained with
    `train.precision: bf16` is distilled as it was trained: its pairs and the student's steps under bfloat16
    autocast where the CPU has native bfloat16 kernels (`devices.uses_bf16`, as `train`), fp32 elsewhere."""
    if options.method not in METHODS:
        raise ValueError(f"unknown distillation method {options.method!r}; choose one of {', '.join(METHODS)}")
    for name in ("grid_share", "rollout", "pair_share"):  # checked before reflow's pairs are drawn
        if not 0 <= getattr(options, name) <= 1:
            raise ValueError(f"{name} must be in [0, 1], got {getattr(options, name)}")
    for name in ("dropout", "conic"):
        if not 0 <= getattr(options, name) < 1:
            raise ValueError(f"{name} must be in [0, 1), got {getattr(options, name)}")
    if options.distance not in DISTANCES:
        raise ValueError(f"distance must be one of {', '.join(DISTANCES)}, got {options.distance!r}")
    options.grid_step_counts()  # malformed grid_steps: refused here, before the teacher is read
    if options.pair_sampler not in PAIR_SAMPLERS:
        raise ValueError(f"reflow pairs are an ODE map: pair_sampler must be one of {', '.join(PAIR_SAMPLERS)}, "
                         f"got {options.pair_sampler!r}")
    cpu_start = time.process_time()  # the budget covers the whole command: loading, reflow's pairs, training
    out = Path(out)
    t = load_teacher(teacher_path)
    teacher, tcfg = t.model, t.config
    for p in teacher.parameters():
        p.requires_grad_(False)
    source = {"teacher": str(teacher_path), "teacher_fingerprint": fingerprint(teacher)}
    torch.manual_seed(options.seed)
    cfg = student_config(tcfg, options.method, SAMPLE_STEPS[options.method], options.dropout)
    student, bcfg = t.build_student(cfg)
    student.backbone.load_state_dict(teacher.backbone.state_dict())  # the student starts as the teacher
    gen = torch.Generator().manual_seed(options.seed + 1)
    bf16 = uses_bf16(cfg.train.precision, torch.device("cpu"))
    pair_seconds = None if not max_cpu_minutes else \
        options.pair_share * max_cpu_minutes * 60 - (time.process_time() - cpu_start)  # of this command's budget
    distiller = _make(options, teacher, student, out, t.data, bf16, pair_seconds)
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=options.lr)
    step = _resume(out, options, cfg, student, distiller, opt, gen, source)
    said = set(getattr(distiller, "snapshots", {}))
    keep = (t.extra_tensors, t.extra_meta)

    def on_step(s: int, stats: dict[str, float]) -> None:
        if s % 50 == 0 or s == options.max_steps:
            with open(out / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"step": s, **stats}) + "\n")
        for n in set(getattr(distiller, "snapshots", {})) - said:  # a progressive round ended: keep its student
            said.add(n)
            _save_snapshot(out, cfg, bcfg, distiller, n, s, keep)
        if s % options.ckpt_every == 0:
            _save(out, cfg, bcfg, student, distiller, opt, gen, s, options, source, keep)

    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    if max_cpu_minutes:  # what is left of it; a tiny positive rest (not 0, which means "no budget") stops at once
        max_cpu_minutes = max(max_cpu_minutes - (time.process_time() - cpu_start) / 60, 1e-9)
    step = fit(distiller, t.data.draw, opt, total=options.max_steps, start=step, batch_size=options.batch_size,
               generator=gen, max_cpu_minutes=max_cpu_minutes, on_step=on_step, progress=progress, bf16=bf16)
    if step >= options.max_steps and isinstance(distiller, ProgressiveDistiller):
        distiller.finish()
        for n in set(distiller.snapshots) - said:
            _save_snapshot(out, cfg, bcfg, distiller, n, step, keep)
    path = _save(out, cfg, bcfg, student, distiller, opt, gen, step, options, source, keep)
    pairs = {"pairs": len(distiller.z)} if isinstance(distiller, ReflowDistiller) else {}  # drawn within the share
    return {"step": step, "checkpoint": str(path), "method": options.method, "sampler": cfg.sample.sampler,
            "steps": cfg.sample.steps, **pairs}


def _make(o: DistillOptions, teacher: Any, student: Any, out: Path, data: TeacherData, bf16: bool,
          pair_seconds: float | None) -> Any:
    if o.method == "progressive":
        return ProgressiveDistiller(teacher, student, start_steps=o.start_steps)
    if o.method == "consistency":
        return ConsistencyDistiller(teacher, student, levels=o.levels)
    z, x1, stored = _pairs(o, teacher, student, out, data, bf16, pair_seconds)
    conditional = bool(stored) or data.captions is not None
    return ReflowDistiller((z, x1), student, grid_share=o.grid_share, rollout=o.rollout, distance=o.distance,
                           grid_steps=o.grid_step_counts(), conic=o.conic,
                           condition=(lambda i, g: data.redrop({k: v[i] for k, v in stored.items() if k != "item"},
                                                               stored["item"][i] if "item" in stored else i, g))
                           if conditional else None)


PAIR_KEYS = ("z", "x1")
# what a run saved before an option existed did: reflow drew Heun pairs and trained at uniform times on straight lines
BEFORE_OPTION = {"grid_share": 0.0, "pair_sampler": "heun", "rollout": 0.0, "grid_steps": "1,2,4", "distance": "l2",
                 "dropout": 0.0, "conic": 0.0}


def _pairs(o: DistillOptions, teacher: Any, student: Any, out: Path, data: TeacherData, bf16: bool,
           pair_seconds: float | None) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """The reflow pairs (z, x1) and their conditions, drawn once and kept in out. A conditional teacher's pairs are
    drawn at the conditions of random training items (so labels follow the data's label frequencies), the
    teacher's unguided ODE mapping each noise at its item's condition; the file keeps the conditions (class_labels,
    low_res, aug_level, control) and the item index `item` (captions are embedded again from it, not stored).
    Drawing stops after pair_seconds of CPU time (None: all o.pairs), keeping the pairs of the noises drawn so far."""
    path = out / "reflow_pairs.safetensors"
    needs = _pair_needs(data)
    drawn = {"pairs": str(o.pairs), "pair_nfe": str(o.pair_nfe), "pair_sampler": o.pair_sampler,
             "seed": str(o.seed)}  # how they are drawn, kept in the file's metadata
    if path.is_file():
        with safe_open(str(path), "pt") as f:
            saved = {k: v for k, v in (f.metadata() or {}).items() if k in drawn}  # none in an older file
        if any(saved[k] != drawn[k] for k in saved):
            diffs = ", ".join(f"{k}: drawn with {saved[k]} vs now {drawn[k]}" for k in saved if saved[k] != drawn[k])
            raise ConfigError(f"{path} holds reflow pairs drawn with other options ({diffs}); repeat them or use a "
                              f"new --out")
        t = load_file(str(path))
        missing = [k for k in needs if k not in t]
        if missing:
            what = "class labels" if missing == ["class_labels"] else ", ".join(missing)
            raise ConfigError(f"{path} holds reflow pairs without {what} (drawn by an earlier version, or for "
                              f"another teacher); this teacher's pairs need them: use a new --out")
        return t["z"], t["x1"], {k: v for k, v in t.items() if k not in PAIR_KEYS}
    g = torch.Generator().manual_seed(o.seed + 2)
    shape = tuple(student.backbone.config.data_shape)
    z = torch.randn((o.pairs, *shape), generator=g)
    stored: dict[str, Tensor] = {}
    cond: dict[str, Tensor] = {}
    if needs:
        item = torch.randint(0, len(data.data), (o.pairs,), generator=g)
        cond = data.condition(item, data.data[item], g, drop=False)
        stored = {k: v for k, v in cond.items() if k not in ("context", "context_mask")}
        stored["item"] = item
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):  # the sampler's state stays float32
        x1 = reflow_pairs(teacher, z, method=o.pair_sampler, nfe=o.pair_nfe, max_cpu_seconds=pair_seconds,
                          **cond).float()
    z, stored = z[:len(x1)], {k: v[:len(x1)] for k, v in stored.items()}
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in {"z": z, "x1": x1, **stored}.items()}, str(path), metadata=drawn)
    return z, x1, stored


def _pair_needs(data: TeacherData) -> list[str]:
    """The tensors a pairs file must hold for this teacher's conditions."""
    needs = ["class_labels"] if data.num_classes else []
    needs += ["low_res", "aug_level"] if data.low_res_size else []
    needs += ["control"] if data.controls is not None else []
    needs += ["item"] if data.captions is not None else []
    return needs


def _tensors(student: Any, distiller: Any, opt: torch.optim.Optimizer, gen: torch.Generator
             ) -> tuple[dict[str, Tensor], dict[str, Any]]:
    tensors = {f"model.{k}": v for k, v in student.backbone.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in distiller.ema.backbone.state_dict().items()})
    opt_t, opt_meta = optimizer_to_flat(opt)
    extra, dmeta = distiller.state()
    tensors.update({**opt_t, **extra, "rng.distill": gen.get_state()})
    return tensors, {"optimizer": opt_meta, "distiller": dmeta}


Keep = tuple[dict[str, Tensor], dict[str, Any]]  # the teacher's extra tensors and metadata (codec, ControlNet)


def _save(out: Path, cfg: RunConfig, bcfg: Any, student: Any, distiller: Any, opt: torch.optim.Optimizer,
          gen: torch.Generator, step: int, o: DistillOptions, source: dict[str, str], keep: Keep) -> Path:
    tensors, meta = _tensors(student, distiller, opt, gen)
    return save_and_prune(out, step, {**tensors, **keep[0]},
                          {"config": cfg.to_dict(), "backbone_config": bcfg.to_dict(), "step": step, **keep[1],
                           "distill": {**source, **o.fixed(), **meta}}, 2, set())[0]


def _save_snapshot(out: Path, cfg: RunConfig, bcfg: Any, distiller: ProgressiveDistiller, n: int, step: int,
                   keep: Keep) -> None:
    """A progressive round's student as a checkpoint of its own: rounds/steps-N/ is a run `sample` reads."""
    scfg = copy.deepcopy(cfg)
    scfg.sample.steps = n
    run = out / "rounds" / f"steps-{n}"
    tensors = {f"ema.{k}": v for k, v in distiller.snapshots[n].items()}
    tensors.update({f"model.{k}": v.clone() for k, v in distiller.snapshots[n].items()})
    save_checkpoint(checkpoint_path(run, step), {**tensors, **keep[0]},
                    {"config": scfg.to_dict(), "backbone_config": bcfg.to_dict(), "step": step, **keep[1]})


def _refusal(out: Path, found: Newest) -> str:
    """Why a distillation with unreadable checkpoints is not resumed (distill has no --restart)."""
    return (f"{out}: checkpoints that cannot be read ({'; '.join(map(str, found.unreadable))}); "
            f"move them aside or use a new --out")


def _resume(out: Path, o: DistillOptions, cfg: RunConfig, student: Any, distiller: Any, opt: torch.optim.Optimizer,
            gen: torch.Generator, source: dict[str, str]) -> int:
    """The step of out's newest checkpoint, with every state restored (0 for a new run); refused when the options
    or the teacher's weights (source's fingerprint; older runs kept none) differ from the run's."""
    if not out.exists():
        return 0
    found = newest_to_resume(out, _refusal)  # as `train`: never resume past (or start over) an unreadable checkpoint
    if found is None:
        return 0
    saved = found.meta.get("distill")
    if not isinstance(saved, dict) or saved.get("method") not in METHODS:
        raise ConfigError(f"{out} holds a run that `distill` did not write; use a new --out directory")
    fixed = {k: saved.get(k, BEFORE_OPTION.get(k)) for k in DistillOptions(method=saved["method"]).fixed()}
    diffs = config_diffs(fixed, o.fixed(), tuple(o.fixed()))
    if diffs:
        raise ConfigError(f"{out} was distilled with other options ({', '.join(diffs)}); repeat them or use a new "
                          f"--out")
    was_fp = saved.get("teacher_fingerprint")
    if was_fp is not None and was_fp != source["teacher_fingerprint"]:
        raise ConfigError(f"{out} was distilled from another teacher: {saved.get('teacher')} had weights "
                          f"{was_fp}, and {source['teacher']} now has {source['teacher_fingerprint']} (a teacher "
                          f"trained further since?); give the teacher checkpoint it started from, or use a new --out")
    # the student's parameterisation: a backbone of the same shape loads under another one without error (a reflow
    # student written before it kept its teacher's was a linear flow), and would then be trained and sampled wrongly
    was = found.meta.get("config", {})
    was = (was.get("process", {}).get("name"), was.get("model", {}).get("prediction"))
    if was != (cfg.process.name, cfg.model.prediction):
        raise ConfigError(f"{out} holds a student with process {was[0]!r} and prediction {was[1]!r}, and this "
                          f"distillation makes one with {cfg.process.name!r} and {cfg.model.prediction!r} (a reflow "
                          f"student now keeps its teacher's; older ones were linear flows); use a new --out")
    t = found.tensors
    student.backbone.load_state_dict(with_prefix(t, "model."))
    distiller.ema.backbone.load_state_dict(with_prefix(t, "ema."))
    distiller.load_state(t, saved["distiller"])
    restore_optimizer(opt, t, saved["optimizer"])
    gen.set_state(t["rng.distill"])
    return int(found.meta["step"])
