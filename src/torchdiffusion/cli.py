"""Command line: `torchdiffusion train | sample | demo`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

EXAMPLES = """examples:
  torchdiffusion train mnist --max-minutes 5 --out runs/mnist
  torchdiffusion train configs/toy2d.yaml --set train.lr=1e-3 --set model.prediction=v
  torchdiffusion sample runs/mnist --sampler ddim --steps 50 --num 64 --grid grid.png --npz samples.npz
  torchdiffusion demo
  torchdiffusion eval runs/fmnist --num 1000 --samplers ddim,dpmpp_2m --nfe 5,10,20,50 --out outputs/eval
  torchdiffusion train-features fashion_mnist --epochs 3
"""


def _parser() -> argparse.ArgumentParser:
    from .sample_args import add_guidance_arguments

    ap = argparse.ArgumentParser(prog="torchdiffusion", description="Diffusion models: train, sample, demo.",
                                 epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    tr = sub.add_parser("train", help="train (or resume) a run from a YAML config",
                        description="Train a model. An existing run directory is resumed from its newest checkpoint.")
    _train_arguments(tr, "mnist, fashion_mnist, fashion_mnist_cond, toy2d, ...")
    tc = sub.add_parser("train-classifier", help="train a noise-conditional classifier for classifier guidance",
                        description="Train p(y | x_t, t) on noisy data (Dhariwal & Nichol 2021); the config needs "
                                    "loss.kind: classifier. Use it with `sample --classifier RUN --classifier-scale S`.")
    _train_arguments(tc, "fashion_mnist_classifier, ...")

    sp = sub.add_parser("sample", help="sample from a checkpoint or a run directory",
                        description="Sample with the EMA weights of a checkpoint (or a run's newest checkpoint). "
                                    "The last stdout line is JSON with nfe, seconds and the paths written.")
    sp.add_argument("path", help="checkpoint file (.safetensors) or run directory")
    sp.add_argument("--sampler", default=None, help="sampler name (see --list-samplers); default from the run config")
    sp.add_argument("--steps", type=int, default=None, help="number of sampler steps")
    sp.add_argument("--num", type=int, default=64, help="number of samples")
    sp.add_argument("--seed", type=int, default=0, help="sample i uses seed + i")
    sp.add_argument("--eta", type=float, default=None, help="DDIM eta (0 = deterministic)")
    sp.add_argument("--grid", default=None, metavar="FILE.png", help="write an image grid")
    sp.add_argument("--npz", default=None, metavar="FILE.npz", help="write arr_0 uint8 N x H x W x C")
    sp.add_argument("--raw-weights", action="store_true", help="use the raw (non-EMA) weights")
    sp.add_argument("--batch-size", type=int, default=256)
    sp.add_argument("--list-samplers", action="store_true", help="print the sampler table and exit")
    add_guidance_arguments(sp)

    dm = sub.add_parser("demo", help="train a small MNIST model on this CPU and write outputs/demo/samples.png")
    dm.add_argument("--minutes", type=float, default=5.5, help="training time budget")
    dm.add_argument("--out", default="outputs/demo")

    ev = sub.add_parser("eval", help="score a run: FID/KID/precision-recall/IS per sampler x NFE, bits/dim, plots",
                        description="Sample a run for every (sampler, NFE) with fixed seeds, score the samples "
                                    "against held-out data (images: feature-net FID, KID, precision/recall, IS; "
                                    "2-D toys: sliced Wasserstein, MMD), measure bits/dim by the ELBO and the ODE, "
                                    "and write OUT/report.json and PNG plots. See docs/eval.md.")
    ev.add_argument("run", help="run directory or checkpoint file")
    ev.add_argument("--num", type=int, default=1000, help="samples per (sampler, NFE)")
    ev.add_argument("--samplers", default="ddim,dpmpp_2m", help="comma-separated sampler names")
    ev.add_argument("--nfe", default="5,10,20,50", help="comma-separated denoiser-call budgets per sample")
    ev.add_argument("--metrics", default=None, help="images: fid,kid,pr,is,bpd; 2-D toys: swd,mmd,bpd (default all)")
    ev.add_argument("--features", default=None, metavar="FILE_OR_DATASET",
                    help="pytorch-fid Inception weights (.pth), a feature-net file (.safetensors) or a dataset "
                         "name for its cached feature net (default: the run's dataset)")
    ev.add_argument("--feature-epochs", type=int, default=2, help="epochs of a feature net trained if none cached")
    ev.add_argument("--bpd-num", type=int, default=100, help="held-out items for bits/dim")
    ev.add_argument("--elbo-steps", type=int, default=100, help="strata of the variational bound per item")
    ev.add_argument("--ode-tol", type=float, default=1e-5, help="rtol = atol of the likelihood ODE solve")
    ev.add_argument("--cond", default="auto", choices=["auto", "null", "uniform"],
                    help="class-conditional runs: null label, balanced labels, or auto (null if trained with it)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--batch-size", type=int, default=250)
    ev.add_argument("--out", default=None, help="output directory (default RUN/eval)")
    ev.add_argument("--raw-weights", action="store_true", help="use the raw (non-EMA) weights")
    ev.add_argument("--no-plots", action="store_true", help="skip the PNG plots (no matplotlib needed)")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")

    tf = sub.add_parser("train-features", help="train and cache the feature classifier used by eval's metrics",
                        description="Train the small classifier whose features FID/KID/PR use and whose logits IS "
                                    "uses; saved to the cache ($TORCHDIFFUSION_CACHE or ~/.cache/torchdiffusion) "
                                    "where eval finds it, or to --out. The last line is JSON with the test accuracy.")
    tf.add_argument("dataset", help="image dataset name (fashion_mnist, mnist, digits, ...)")
    tf.add_argument("--epochs", type=int, default=2)
    tf.add_argument("--seed", type=int, default=0)
    tf.add_argument("--out", default=None, metavar="FILE.safetensors", help="write here instead of the cache")
    return ap


def _train_arguments(p: argparse.ArgumentParser, examples: str) -> None:
    p.add_argument("config", help=f"a YAML file, or the name of a packaged config ({examples})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.lr=1e-3 (repeatable)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and checkpoint) after this wall time")
    p.add_argument("--max-cpu-minutes", type=float, default=None,
                   help="stop (and checkpoint) after this much CPU time of the process, all threads together")
    p.add_argument("--max-steps", type=int, default=None, help="stop at this optimizer step (overrides the config)")
    p.add_argument("--out", default=None, help="run directory (default runs/<config name>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def cmd_train(a: argparse.Namespace) -> dict[str, Any]:
    from .config import ConfigError, load_config
    from .train import train

    cfg = load_config(a.config, a.overrides)
    if a.command == "train-classifier" and cfg.loss.kind != "classifier":
        raise ConfigError(f"{a.config}: train-classifier needs loss.kind: classifier (and model.backbone: "
                          f"classifier), got loss.kind {cfg.loss.kind!r}")
    out = Path(a.out or Path("runs") / Path(a.config).stem)
    result = train(cfg, out, max_steps=a.max_steps, max_minutes=a.max_minutes, max_cpu_minutes=a.max_cpu_minutes,
                   progress=not a.no_progress)
    return {"run_dir": str(out), **result}


def load_for_sampling(path: str | Path, raw_weights: bool = False) -> tuple[Any, Any, dict[str, Any]]:
    """(model with EMA or raw weights loaded, run config, checkpoint metadata) from a checkpoint or run dir."""
    from .build import build_model
    from .config import ConfigError, RunConfig, from_dict
    from .train.checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint

    ckpt = resolve_checkpoint(Path(path))
    tensors, meta = load_checkpoint(ckpt)
    try:
        cfg = from_dict(RunConfig, meta["config"])
    except (ConfigError, KeyError) as e:
        raise CheckpointError(f"{ckpt}: its saved config is not one this version reads ({e})") from None
    model, _ = build_model(cfg.model, cfg.process)
    prefix = "model." if raw_weights else "ema."
    try:
        model.backbone.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    except RuntimeError as e:
        raise CheckpointError(f"{ckpt}: its weights do not fit the model its config describes "
                              f"({str(e).strip().splitlines()[0]})") from None
    model.eval()
    return model, cfg, {**meta, "path": str(ckpt)}


def data_shape(cfg: Any) -> tuple[int, ...]:
    """Per-sample shape of the run's data, from the backbone config (no data loading needed)."""
    p = cfg.model.params
    if cfg.model.backbone == "mlp":
        return (int(p.get("dim", 2)),)
    return (int(p.get("in_channels", 1)), int(p.get("image_size", 32)), int(p.get("image_size", 32)))


def cmd_sample(a: argparse.Namespace) -> dict[str, Any]:
    from .data import save_image_grid, to_uint8_nhwc
    from .generate import generate
    from .sample_args import recipe_from_args
    from .sampling import METHODS

    if a.list_samplers:
        for name, m in METHODS.items():
            print(f"{name:12s} {m.kind}  order {m.order}  evals/step {m.evals_per_step}")
        return {}
    model, cfg, meta = load_for_sampling(a.path, a.raw_weights)
    if cfg.loss.kind == "classifier":
        raise ValueError(f"{a.path} is a noise-conditional classifier, not a diffusion model; use it with "
                         "`sample MODEL --classifier PATH`")
    sampler = a.sampler or cfg.sample.sampler
    steps = a.steps or cfg.sample.steps
    options = {}
    if sampler == "ddim":
        options["eta"] = cfg.sample.eta if a.eta is None else a.eta
    guidance = recipe_from_args(a, model, a.num)
    t0 = time.perf_counter()
    x, nfe = generate(model, data_shape(cfg), a.num, sampler=sampler, steps=steps, seed=a.seed,
                      batch_size=a.batch_size, progress=sys.stderr.isatty(), guidance=guidance, **options)
    seconds = time.perf_counter() - t0
    written = {}
    if x.ndim == 4:
        x = x.clamp(-1, 1)
        if a.grid:
            # all classes in turn (the default of a class-conditional model): one column per class
            k = int(getattr(model.backbone.config, "num_classes", 0))
            nrow = k if k and a.class_label in (None, "all") and a.num >= k else None
            written["grid"] = str(save_image_grid(x, a.grid, nrow=nrow) or a.grid)
        if a.npz:
            Path(a.npz).parent.mkdir(parents=True, exist_ok=True)
            np.savez(a.npz, arr_0=to_uint8_nhwc(x))
            written["npz"] = a.npz
    else:
        from .train.visual import save_scatter
        if a.grid:
            written["grid"] = str(save_scatter(x, a.grid))
        if a.npz:
            np.savez(a.npz, arr_0=x.numpy())
            written["npz"] = a.npz
    return {"checkpoint": meta["path"], "step": meta["step"], "sampler": sampler, "steps": steps, "nfe": nfe,
            "num": a.num, "seconds": round(seconds, 3), **written}


def cmd_demo(a: argparse.Namespace) -> dict[str, Any]:
    from .config import load_config
    from .data import save_image_grid
    from .generate import generate
    from .train import Trainer

    out = Path(a.out)
    cfg = load_config("mnist")
    print(f"[torchdiffusion] demo: training a {cfg.model.backbone} on MNIST for {a.minutes} minutes "
          f"on {torch.get_num_threads()} threads -> {out}", flush=True)
    trainer = Trainer(cfg, out / "run", progress=sys.stderr.isatty())
    result = trainer.run(max_minutes=a.minutes)
    t0 = time.perf_counter()
    x, nfe = generate(trainer.ema, (1, 28, 28), 64, sampler=cfg.sample.sampler, steps=cfg.sample.steps, seed=0)
    path = save_image_grid(x.clamp(-1, 1), out / "samples.png") or out / "samples.png"
    return {"samples": str(path), "train_steps": result["step"], "train_seconds": round(result["seconds"], 1),
            "nfe": nfe, "sample_seconds": round(time.perf_counter() - t0, 2), "checkpoint": result["checkpoint"]}


def cmd_eval(a: argparse.Namespace) -> dict[str, Any]:
    from .evaluate import eval_command
    return eval_command(a)


def cmd_train_features(a: argparse.Namespace) -> dict[str, Any]:
    from .evaluate import train_features_command
    return train_features_command(a)


def main(argv: list[str] | None = None) -> int:
    from .config import ConfigError
    from .data import DatasetNotFoundError
    from .train.checkpoint import CheckpointError
    from .train.trainer import TrainingDivergedError

    a = _parser().parse_args(argv)
    try:
        commands = {"train": cmd_train, "train-classifier": cmd_train, "sample": cmd_sample, "demo": cmd_demo,
                    "eval": cmd_eval, "train-features": cmd_train_features}
        result = commands[a.command](a)
    except (ConfigError, CheckpointError, DatasetNotFoundError, TrainingDivergedError, ValueError, OSError) as e:
        print(f"torchdiffusion {a.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"torchdiffusion {a.command}: interrupted; `train` resumes from the newest checkpoint when rerun",
              file=sys.stderr)
        return 130
    if result and os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 reports
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
