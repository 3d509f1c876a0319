"""Masked diffusion (MDLM) end to end on quantised sklearn digits: train, bound on held-out data, sample with cache.

Each 8 x 8 digit becomes a sequence of 64 tokens over `--levels` grey levels (raster order). The bidirectional
SequenceTransformer (no time input, as MDLM) is trained with the continuous-time masked bound for a budget of process
CPU minutes, then the bound is estimated on the held-out 20% of the digits (several (t, x_t) draws per sequence) and
compared with two references fitted on the training split: the uniform code (log2 K bits per token) and independent
per-position categoricals (their held-out cross-entropy; a model that uses the correlations between pixels must beat
it). Finally a few digits are drawn by the ancestral sampler with MDLM's cache, and the calls it saved are reported.

    PYTHONPATH=src .venv/bin/python benchmarks/discrete_toy.py --max-cpu-minutes 4
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
from sklearn.datasets import load_digits

from torchdiffusion.discrete import BackboneDenoiser, MaskedDiffusion, SamplerStats, ancestral, masked_loss
from torchdiffusion.nn import count_parameters
from torchdiffusion.nn.sequence import SequenceTransformer, SequenceTransformerConfig


def quantised_digits(levels: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) token sequences (N, 64) in [0, levels), an 80/20 split of the 1797 digits."""
    images = load_digits().images  # (1797, 8, 8) in 0..16
    tokens = np.minimum((images / 17.0 * levels).astype(np.int64), levels - 1).reshape(len(images), 64)
    perm = np.random.default_rng(seed).permutation(len(tokens))
    cut = int(0.8 * len(tokens))
    return torch.from_numpy(tokens[perm[:cut]]), torch.from_numpy(tokens[perm[cut:]])


def independent_bits(train: torch.Tensor, test: torch.Tensor, levels: int) -> float:
    """Held-out cross-entropy (bits per token) of per-position categoricals fitted on train (add-one smoothing)."""
    counts = torch.nn.functional.one_hot(train, levels).sum(0).double() + 1  # (64, K)
    log_p = (counts / counts.sum(-1, keepdim=True)).log()
    return float(-log_p[torch.arange(64), test].mean()) / math.log(2)  # log_p[n, test[i, n]]


@torch.no_grad()
def heldout_bound(den: BackboneDenoiser, test: torch.Tensor, repeats: int, seed: int) -> tuple[float, float]:
    """Mean and standard error of the masked bound in bits per token on test, `repeats` draws per sequence."""
    g = torch.Generator().manual_seed(seed)
    per_seq = torch.stack([masked_loss(den, test, generator=g) for _ in range(repeats)]).mean(0)  # (N,) nats
    bits = per_seq / (test.shape[1] * math.log(2))
    return float(bits.mean()), float(bits.std() / math.sqrt(len(bits)))


def render(x: torch.Tensor, levels: int) -> str:
    """Digits (n, 64) side by side as text, darker characters for higher levels."""
    ramp = " .:-=+*#%@"
    chars = [ramp[round(v * (len(ramp) - 1) / (levels - 1))] for v in range(levels)]
    rows = []
    for r in range(8):
        rows.append("   ".join("".join(chars[int(v)] for v in d.view(8, 8)[r]) for d in x))
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-cpu-minutes", type=float, default=4.0, help="process CPU time for training")
    ap.add_argument("--levels", type=int, default=4, help="grey levels K of the quantised digits")
    ap.add_argument("--schedule", default="linear", choices=["linear", "cosine"])
    ap.add_argument("--hidden-dim", type=int, default=96)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--repeats", type=int, default=16, help="(t, x_t) draws per held-out sequence")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--sample-steps", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    train, test = quantised_digits(a.levels, a.seed)
    process = MaskedDiffusion(a.levels, a.schedule)
    cfg = SequenceTransformerConfig(vocab_size=a.levels + 1, seq_len=64, hidden_dim=a.hidden_dim, depth=a.depth,
                                    num_heads=4, time_conditioning=False)
    net = SequenceTransformer(cfg)
    den = BackboneDenoiser(net, process)
    opt = torch.optim.AdamW(net.parameters(), lr=a.lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(a.seed)
    start, steps, recent = time.process_time(), 0, []
    while time.process_time() - start < 60 * a.max_cpu_minutes:
        batch = train[torch.randint(0, len(train), (a.batch,), generator=g)]
        warm = min(1.0, (steps + 1) / 200)  # linear warm-up of the learning rate
        for group in opt.param_groups:
            group["lr"] = a.lr * warm
        loss = masked_loss(den, batch, generator=g).mean() / 64  # nats per token
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        steps += 1
        recent.append(loss.item())
        if steps % 500 == 0:
            print(f"step {steps}: train bound {np.mean(recent) / math.log(2):.4f} bits/token "
                  f"({(time.process_time() - start) / 60:.1f} CPU min)", flush=True)
            recent = []
    net.eval()
    bound, se = heldout_bound(den, test, a.repeats, a.seed + 1)
    stats = SamplerStats()
    x_T = process.sample_prior((a.samples, 64), torch.Generator().manual_seed(a.seed + 2))
    samples = ancestral(den, x_T, a.sample_steps, generator=torch.Generator().manual_seed(a.seed + 3), stats=stats)
    report = {
        "levels": a.levels, "schedule": a.schedule, "parameters": count_parameters(net), "train_steps": steps,
        "cpu_minutes": round((time.process_time() - start) / 60, 2),
        "heldout_bound_bits_per_token": round(bound, 4), "heldout_bound_se": round(se, 4),
        "independent_positions_bits_per_token": round(independent_bits(train, test, a.levels), 4),
        "uniform_bits_per_token": round(math.log2(a.levels), 4),
        "sampler": {"steps": stats.steps, "calls": stats.calls, "rows_evaluated": stats.rows,
                    "rows_reused": stats.cached_rows, "rows_uncached": stats.steps * a.samples},
    }
    print(render(samples, a.levels))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
