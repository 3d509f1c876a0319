"""`torchdiffusion distill`: distil a trained run into a few-step student run (progressive, consistency, reflow)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import below_one, budget, non_negative_int, out_dir, positive_float, positive_int, unit_float


def step_counts(text: str) -> str:
    """An argparse type: comma-separated few-step grid sizes in [1, 64], kept as their canonical text ("1,2,4")."""
    steps = [positive_int(64)(n.strip()) for n in text.split(",")]
    return ",".join(map(str, steps))


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..distill.run import DEFAULT_METHOD, DISTANCES, METHODS, PAIR_SAMPLERS, DistillOptions

    d = DistillOptions()  # the defaults are the library's, stated once

    sp = sub.add_parser("distill", help="distil a trained run into a one- or two-step student",
                        description="Distil a teacher run (its EMA weights) into a student run directory that "
                                    "`sample` and `eval` read: `sample OUT --steps N` then makes N network "
                                    "evaluations. progressive: Salimans & Ho 2022 (rounds halving DDIM steps; each "
                                    "round's student is kept in OUT/rounds/steps-N); consistency: Song et al. 2023 "
                                    "(Heun teacher steps, EMA target); reflow: Liu et al. 2023 (teacher ODE pairs, a "
                                    "linear flow trained on them). Any teacher `train` or `train-controlnet` makes: "
                                    "class labels, prompts, a super-resolution input or a control image condition "
                                    "the student as they did the teacher, and a latent teacher's student decodes with "
                                    "its autoencoder; sample the student with the teacher's flags (--prompt, "
                                    "--class-label, --control, upscale --sr-run). A teacher trained with "
                                    "train.precision bf16 is distilled in bfloat16 autocast too, where the CPU has "
                                    "native bfloat16. An existing OUT is resumed from its newest checkpoint with the "
                                    "same options.",
                        epilog="example: torchdiffusion distill runs/toy2d --method consistency --max-cpu-minutes 5 "
                               "--out runs/toy2d-cd")
    sp.add_argument("teacher", help="the teacher: a run directory or a checkpoint file")
    sp.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD,
                    help=f"distillation method (default {DEFAULT_METHOD}: the lowest 2-evaluation error in "
                         f"docs/fewstep.md)")
    sp.add_argument("--out", type=out_dir, required=True, help="the student's run directory")
    sp.add_argument("--max-steps", type=positive_int(10_000_000), default=d.max_steps,
                    help="length of the schedule in optimizer steps (progressive rounds share it)")
    sp.add_argument("--max-cpu-minutes", type=budget, default=None,
                    help="stop (and checkpoint) after this much CPU time; rerun to resume")
    sp.add_argument("--batch-size", type=positive_int(100_000), default=d.batch_size)
    sp.add_argument("--lr", type=positive_float, default=d.lr)
    sp.add_argument("--seed", type=non_negative_int, default=d.seed)
    sp.add_argument("--start-steps", type=positive_int(65_536), default=d.start_steps,
                    help="progressive: the teacher's steps in the first round (a power of 2; its student takes half, "
                         "and each round halves again down to 1: 64 makes 6 rounds)")
    sp.add_argument("--levels", type=positive_int(100_000), default=d.levels,
                    help="consistency: number of Karras noise levels of the teacher's Heun steps")
    sp.add_argument("--pairs", type=positive_int(10_000_000), default=d.pairs,
                    help="reflow: the most (noise, sample) pairs drawn by the teacher's ODE, before training and out "
                         "of --max-cpu-minutes (default %(default)s; for fashion_mnist.yaml about 14 CPU-minutes with "
                         "native bf16 on a 2-core AMD EPYC, 19 on an Intel Xeon: docs/fewstep.md)")
    sp.add_argument("--pair-share", type=unit_float, default=d.pair_share,
                    help="reflow, with --max-cpu-minutes: the pairs stop at this share of the budget, fewer than "
                         "--pairs on a slower CPU, so that training keeps the rest (default %(default)s; "
                         "docs/fewstep.md)")
    sp.add_argument("--pair-nfe", type=positive_int(10_000), default=d.pair_nfe,
                    help="reflow: teacher calls per pair (default %(default)s)")
    sp.add_argument("--pair-sampler", choices=PAIR_SAMPLERS, default=d.pair_sampler,
                    help="reflow: the teacher's ODE sampler for its pairs (default %(default)s)")
    sp.add_argument("--grid-share", type=unit_float, default=d.grid_share,
                    help="reflow: share of each batch trained at the levels of the --grid-steps few-step grids "
                         "(where the student is sampled), the rest at uniform times (default %(default)s; "
                         "docs/fewstep.md)")
    sp.add_argument("--rollout", type=unit_float, default=d.rollout,
                    help="reflow: share of the grid-level samples below sigma_max trained at the state the student's "
                         "own few-step sampler reaches there, not on the pair's straight line (default "
                         "%(default)s; docs/fewstep.md)")
    sp.add_argument("--grid-steps", type=step_counts, default=d.grid_steps,
                    help="reflow: the few-step grids (step counts, comma-separated) whose levels --grid-share trains "
                         "(default %(default)s: sigma_max and the 2-step level; 4 calls then use two untrained levels)")
    sp.add_argument("--distance", choices=DISTANCES, default=d.distance,
                    help="reflow: the loss of the backbone's output, squared error or pseudo-Huber "
                         "(default %(default)s)")
    sp.add_argument("--conic", type=below_one, default=d.conic,
                    help="reflow: each pair's noise turned towards fresh noise by this share of their angle (slerp) "
                         "every time it is drawn, with the same sample: conic reflow's cone of noises around a pair "
                         "(Kim et al. 2025), against the memorising of few pairs (default %(default)s: off)")
    sp.add_argument("--dropout", type=below_one, default=d.dropout,
                    help="the student's backbone dropout while it trains, in [0, 1), whatever the teacher's was "
                         "(a U-Net's; off when sampled; default %(default)s)")
    sp.add_argument("--ckpt-every", type=positive_int(10_000_000), default=d.ckpt_every)
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")
    sp.set_defaults(handler=run)


def run(a: argparse.Namespace) -> dict[str, Any]:
    from ..distill.run import DistillOptions, distill

    o = DistillOptions(method=a.method, max_steps=a.max_steps, batch_size=a.batch_size, lr=a.lr, seed=a.seed,
                       start_steps=a.start_steps, levels=a.levels, pairs=a.pairs, pair_share=a.pair_share,
                       pair_nfe=a.pair_nfe, pair_sampler=a.pair_sampler, grid_share=a.grid_share, rollout=a.rollout,
                       grid_steps=a.grid_steps, distance=a.distance, conic=a.conic,
                       dropout=a.dropout, ckpt_every=a.ckpt_every)
    result = distill(a.teacher, Path(a.out), o, max_cpu_minutes=a.max_cpu_minutes, progress=not a.no_progress)
    return {"run_dir": str(a.out), **result}
