"""Held-out likelihood of token runs: bits per character of the autoregressive model (exact) and of the diffusion
models (their variational bound), on the same held-out windows, written as a top-level `bits_per_char`.

The masked bound int_0^1 w(t) E[CE_masked] dt is estimated with `strata` stratified times per window (per block
for block diffusion), t_r = (r + u) / strata (unbiased, far less variance than independent draws); D3PM's
L_T + T E_t[L_(t-1)] likewise with stratified steps. Every window is scored from its first character with no
context, for every model alike.
"""

from __future__ import annotations

import json
import math
import shlex
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data import IMAGE_TOKEN_SETS, load_dataset
from ..discrete.autoregressive import AutoregressiveModel, autoregressive_nll
from ..discrete.block import block_loss, per_token_times
from ..discrete.bound import d3pm_loss
from ..discrete.masked import MaskedDiffusion, masked_loss
from ..rng import rand

Tensor = torch.Tensor
TEXT_METRICS = ("nll",)


@torch.no_grad()
def sequence_nll(model: nn.Module, x0: Tensor, *, strata: int = 16,
                 generator: torch.Generator | None = None) -> Tensor:
    """-log p(x0) per sequence (B,) nats: exact for the autoregressive model, the NELBO estimate for diffusion."""
    if isinstance(model, AutoregressiveModel):
        return autoregressive_nll(model, x0)
    process, (B, L) = model.process, x0.shape
    block = getattr(process, "block_size", None)
    total = torch.zeros(B, dtype=torch.float64, device=x0.device)
    for r in range(strata):
        if block is not None:  # block diffusion: every block's time stratified on its own
            n = math.ceil(L / block)
            u = (r + rand((B, n), generator, dtype=torch.float64, device=x0.device)) / strata
            total += block_loss(model, x0, generator=generator, t=per_token_times(u.clamp(min=1e-5), L, block))
            continue
        u = (r + rand((B,), generator, dtype=torch.float64, device=x0.device)) / strata  # stratified in [0, 1)
        if isinstance(process, MaskedDiffusion):
            total += masked_loss(model, x0, generator=generator, t=u.clamp(min=1e-5))
        else:
            steps = (u * process.num_steps).floor() + 1  # stratified over 1..T
            total += d3pm_loss(model, x0, generator=generator, t=steps)
    return total / strata


def refuse_sampling_flags(run: str | Path, loaded: Any, flags: tuple[str, ...]) -> None:
    """ValueError naming the sample-based evaluation flags given for a token run, which eval scores by likelihood."""
    if flags:
        raise ValueError(
            f"{', '.join(flags)}: {run} is a token run ({loaded.config.process.name} on {loaded.config.data.name}), "
            f"and eval scores a token run by its held-out likelihood only (--metrics nll: bits per "
            f"{'dim' if loaded.config.data.name in IMAGE_TOKEN_SETS else 'character'}, from --bpd-num held-out items "
            f"and --elbo-steps strata of the bound); it draws no samples, so there is no sampler, NFE, sample count "
            f"or feature net to choose. Leave those flags out, and draw samples with `torchdiffusion sample {run}`.")


def heldout_windows(cfg: Any, num: int) -> Tensor:
    """num held-out windows (split "test" of the run's dataset) spread evenly over it; all of them if fewer."""
    try:
        data, _ = load_dataset(cfg.data.name, **{**cfg.data.options, "split": "test"})
    except TypeError:
        raise ValueError(f"dataset {cfg.data.name!r} has no held-out split to score the likelihood on") from None
    if num >= len(data):
        return data
    return data[torch.linspace(0, len(data) - 1, num).round().long()]


def bits_per_token(model: nn.Module, data: Tensor, *, strata: int, seed: int = 0, batch_size: int = 256,
                   progress: bool = False) -> dict[str, float]:
    """Mean bits per token of data (N, L) and its standard error over windows."""
    device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(seed)
    per_window = []
    for start in tqdm(range(0, len(data), batch_size), disable=not progress, desc="held-out NLL"):
        x0 = data[start:start + batch_size].to(device)
        per_window.append(sequence_nll(model, x0, strata=strata, generator=g).cpu())
    bits = torch.cat(per_window) / (data.shape[1] * math.log(2))  # (N,) bits per token of each window
    se = float(bits.std() / math.sqrt(len(bits))) if len(bits) > 1 else float("nan")
    return {"bits_per_token": float(bits.mean()), "std_err": se, "windows": len(bits),
            "tokens": int(data.numel())}


def evaluate_text(run: str | Path, loaded: Any, o: Any) -> dict[str, Any]:
    """`eval --metrics nll` of a token run: writes <out>/report.json with a top-level bits_per_char (text) or
    bits_per_dim (an image token set); returns it."""
    t0 = time.perf_counter()
    metrics = ["nll"] if o.metrics is None else o.metrics
    bad = [m for m in metrics if m not in TEXT_METRICS]
    if bad:
        raise ValueError(f"unknown metric(s) {bad} for a token run; choose from {', '.join(TEXT_METRICS)}")
    cfg, meta = loaded.config, loaded.meta
    ckpt = Path(meta["path"])
    run_dir = Path(run) if Path(run).is_dir() else ckpt.parent.parent
    out = Path(o.out) if o.out else run_dir / "eval"
    o.out = out
    out.mkdir(parents=True, exist_ok=True)
    strata = o.bpd.elbo_steps
    data = heldout_windows(cfg, o.bpd_num)
    nll = bits_per_token(loaded.model, data, strata=strata, seed=o.seed, batch_size=o.batch_size,
                         progress=o.progress)
    exact = isinstance(loaded.model, AutoregressiveModel)
    images = cfg.data.name in IMAGE_TOKEN_SETS
    unit = "dim" if images else "char"
    conditional = int(getattr(loaded.model, "num_classes", 0)) > 0
    command = ["torchdiffusion", "eval", str(run), "--metrics", "nll", "--bpd-num", str(o.bpd_num),
               "--elbo-steps", str(strata), "--seed", str(o.seed), "--out", str(out)]
    report = {"command": shlex.join(command), "run": str(run), "checkpoint": meta["path"],
              "train_step": meta.get("step"), "weights": "raw" if o.raw_weights else "EMA",
              "dataset": cfg.data.name, "data_kind": "tokens", "model": cfg.process.name,
              f"bits_per_{unit}": nll["bits_per_token"],
              "nll": {**nll, "what": f"exact -log2 p(x) per {unit}" if exact else
                      f"variational bound (NELBO) per {unit}, {strata} stratified times per item" +
                      (f" (of the {cfg.process.vocab_size}-level quantised data, at most log2 "
                       f"{cfg.process.vocab_size} bits; not comparable with 256-level bits/dim)" if images else "") +
                      ("; the unconditional model p(x) (null label) of a class-conditional run" if conditional
                       else ""),
                      "split": "test (every 20th verse for kjv)" if not images else "test"},
              "seconds": {"total": round(time.perf_counter() - t0, 2)}, "plots": []}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report
