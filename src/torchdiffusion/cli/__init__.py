"""Command line: `torchdiffusion COMMAND ...`; the commands are the modules named in COMMANDS below.

One module per command, each with `add_parser(subparsers)` and `run(args) -> dict`; this module assembles them and
turns a user's error into one line and exit status 2. The CLI only parses and calls the library.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback

from . import (cascade, demo, distill, eval, img2img, inpaint, interpolate, invert, restore, sample, train,
               train_autoencoder, train_controlnet, train_features, ui, upscale)

EXAMPLES = """examples:
  torchdiffusion train mnist --max-minutes 5 --out runs/mnist
  torchdiffusion train configs/toy2d.yaml --set train.lr=1e-3 --set model.prediction=v
  torchdiffusion sample runs/mnist --sampler ddim --steps 50 --num 64 --tiles samples.png --npz samples.npz
  torchdiffusion demo
  torchdiffusion eval runs/fmnist --num 1000 --samplers ddim,dpmpp_2m --nfe 5,10,20,50 --out outputs/eval
  torchdiffusion train-features fashion_mnist --epochs 3
  torchdiffusion train-autoencoder fashion_mnist_vae --max-cpu-minutes 20 --out runs/vae
  torchdiffusion train fashion_mnist_ldm --set autoencoder=runs/vae --out runs/ldm
  torchdiffusion ui runs --port 7860
  torchdiffusion inpaint runs/mnist --image digit.png --mask-preset centre --num 4 --out outputs/inpaint
  torchdiffusion img2img runs/mnist --image sketch.png --strength 0.5 --out outputs/img2img
  torchdiffusion restore runs/mnist --image blurred.png --operator blur:1 --noise-std 0.05 --out outputs/restore
  torchdiffusion upscale runs/mnist --image small.png --factor 4 --out outputs/upscale
  torchdiffusion invert runs/mnist --image digit.png --nfe 50 --out outputs/invert
  torchdiffusion interpolate runs/mnist --a one.png --b two.png --num 8 --out outputs/interpolate
  torchdiffusion cascade runs/fashion_mnist runs/fashion_mnist_sr7 --num 16 --out outputs/cascade
  torchdiffusion distill runs/toy2d --method consistency --max-cpu-minutes 5 --out runs/toy2d-cd
"""
COMMANDS = (train, sample, demo, eval, train_features, train_autoencoder, train_controlnet, ui, inpaint, img2img, restore,
            upscale, invert, interpolate, cascade, distill)


def parser() -> argparse.ArgumentParser:
    """The whole command line: one subparser per command module."""
    ap = argparse.ArgumentParser(prog="torchdiffusion",
                                 description="Diffusion models: train, sample, evaluate, edit images.",
                                 epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return ap


def user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a user's input or environment can cause: one paragraph and exit status 2, never a traceback."""
    from ..config import ConfigError
    from ..data import DatasetNotFoundError
    from ..train.checkpoint import CheckpointError
    from ..train.trainer import TrainingDivergedError

    return (ConfigError, CheckpointError, DatasetNotFoundError, TrainingDivergedError, ValueError, OSError,
            OverflowError, MemoryError)


def one_paragraph(e: BaseException) -> str:
    """The error's message without blank lines and at most 2000 characters (a message never floods the terminal)."""
    text = "\n".join(line for line in str(e).splitlines() if line.strip()) or type(e).__name__
    if isinstance(e, MemoryError):
        text = f"out of memory ({text}); ask for less (fewer or smaller samples, a smaller batch)"
    return text if len(text) <= 2000 else text[:1997] + "..."


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    try:
        result = a.handler(a)
    except user_errors() as e:
        print(f"torchdiffusion {a.command}: error: {one_paragraph(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"torchdiffusion {a.command}: interrupted; `train` resumes from the newest checkpoint when rerun",
              file=sys.stderr)
        return 130
    except Exception:  # a bug of ours, not the user's input: say so, with the traceback to report
        traceback.print_exc()
        print(f"torchdiffusion {a.command}: internal error: this is a bug in torchdiffusion, not a problem with "
              f"your input; please report it with the traceback above", file=sys.stderr)
        return 70
    if result and os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 reports
        print(json.dumps(result))
    return 0
