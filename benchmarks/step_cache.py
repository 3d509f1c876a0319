"""Step caching (DeepCache, Ma et al. 2023) on a trained U-Net: CPU time per sample and how far the samples move.

For each cache interval N and refresh schedule (uniform: the paper's 1:N at every noise level; auto: features reused
only from full passes at sigma <= step_cache.default_max_sigma, 20 sigma_data for eps and score models, 1 sigma_data
for the others; or a number), the same start noises are sampled with the same sampler and steps; reported are the CPU
seconds (this process, all threads) of sampling, the speed-up over N = 1 (the plain model, bit for bit), and the RMS
distance of the samples to the plain model's (images in [-1, 1], or latents), against the distance between two plain
sample sets of different step counts (steps and steps + 5) as a yardstick of what "a small change" is. With --fid N,
each row also samples N images from the same seeds in batches of --num (decoded for a latent model) and scores them by
FID against the dataset's test split on the library's feature network, as `eval` does. The eps cap was chosen on a
digits eps model with seed 0, the other on a Fashion-MNIST v model with seed 0 (docs/latent.md); report with another
--seed and on other models.

    PYTHONPATH=src python benchmarks/step_cache.py --model runs/digits --num 64 --steps 20 --intervals 2,3,5 --seed 1
    PYTHONPATH=src python benchmarks/step_cache.py --model runs/fmnist --num 250 --fid 1000 --method unipc \
        --intervals 2,3 --repeats 1
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import torch

from torchdiffusion.evaluate.data import load_featurizer, reference_data
from torchdiffusion.generate import start_noise
from torchdiffusion.metrics.fid import fid_from_features
from torchdiffusion.loading import load_run
from torchdiffusion.sampling import sample
from torchdiffusion.step_cache import default_max_sigma, step_cached


def rms(a: torch.Tensor, b: torch.Tensor) -> float:
    """Root-mean-square distance per pixel, averaged over samples."""
    return (a - b).reshape(len(a), -1).pow(2).mean(1).sqrt().mean().item()


@torch.no_grad()
def timed(model, x: torch.Tensor, method: str, steps: int) -> tuple[torch.Tensor, float]:
    c0 = time.process_time()
    out = sample(model, x, method=method, nfe=steps)
    return out.clamp(-1, 1), time.process_time() - c0


class FID:
    """FID of images against the run's dataset's test split, on the library's feature network (as `eval`)."""

    def __init__(self, loaded) -> None:
        data = loaded.config.data
        self.featurizer, _ = load_featurizer(None, data.name)
        ref = reference_data(data.name, dict(data.options), data.limit)
        self.ref_feats, _ = self.featurizer.embed(ref.x)

    @torch.no_grad()
    def __call__(self, model, loaded, num: int, batch: int, method: str, steps: int, seed: int) -> float:
        images = []
        for i in range(0, num, batch):  # each batch its own seed: the same images for every row
            x = start_noise(model, loaded.data_shape, min(batch, num - i), seed + 1 + i)
            images.append(loaded.decode(sample(model, x, method=method, nfe=steps)).clamp(-1, 1))
        return self.score(torch.cat(images))

    def score(self, images: torch.Tensor) -> float:
        """FID of images (N, C, H, W) in [-1, 1] against the test split."""
        return fid_from_features(self.ref_feats, self.featurizer.embed(images)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="a U-Net run directory or checkpoint")
    ap.add_argument("--num", type=int, default=64, help="samples (one batch)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--method", default="ipndm")
    ap.add_argument("--intervals", default="2,3,5", help="cache intervals besides 1 (the plain model, always run)")
    ap.add_argument("--schedules", default="uniform,auto",
                    help="refresh schedules: uniform (cache at every noise level), auto (the default cap), or a "
                         "number (the largest sigma whose features are reused)")
    ap.add_argument("--repeats", type=int, default=3, help="timings per interval (the fastest is reported)")
    ap.add_argument("--max-cpu-minutes", type=float, default=10.0, help="stop adding intervals past this CPU time")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fid", type=int, default=0, metavar="N", help="also the FID of N samples per row (0: none)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    loaded = load_run(a.model)
    model = loaded.model
    x = start_noise(model, loaded.data_shape, a.num, a.seed)
    c_start = time.process_time()
    plain, _ = timed(model, x, a.method, a.steps)
    longer, _ = timed(model, x, a.method, a.steps + 5)
    print(f"# {a.model} (step {loaded.meta['step']}), {a.method} {a.steps} steps, {a.num} samples, "
          f"{a.threads} thread(s), {platform.processor() or platform.machine()}, torch {torch.__version__}")
    print(f"# yardstick: RMS({a.steps} vs {a.steps + 5} plain steps) = {rms(plain, longer):.4f}")
    print(f"# prediction {model.prediction}, sigma_data {model.sigma_data}, auto cap {default_max_sigma(model)}")
    fid = FID(loaded) if a.fid else None
    print("| interval | schedule | deep passes | CPU s / batch | speed-up | RMS vs plain |" + (" FID |" if fid else ""))
    print("|---:|---|---:|---:|---:|---:|" + ("---:|" if fid else ""))
    base_time = None
    runs = [(1, "uniform")] + [(int(n), s) for n in a.intervals.split(",") for s in a.schedules.split(",")]
    for n, schedule in runs:
        if time.process_time() - c_start > 60 * a.max_cpu_minutes:
            print(f"# stopped at the CPU budget before interval {n} ({schedule})", file=sys.stderr)
            break
        cap = None if schedule == "uniform" else "auto" if schedule == "auto" else float(schedule)
        best, out, deep = float("inf"), None, 0
        for _ in range(a.repeats):
            cached = step_cached(model, n, cap)
            out, sec = timed(cached, x, a.method, a.steps)
            best, deep = min(best, sec), cached.cached.deep_calls
        base_time = base_time or best
        label = schedule if schedule != "auto" else f"auto (sigma <= {cached.max_sigma:g})"
        score = f" {fid(step_cached(model, n, cap), loaded, a.fid, a.num, a.method, a.steps, a.seed):.2f} |" if fid else ""
        print(f"| {n} | {label} | {deep} | {best:.3f} | {base_time / best:.2f}x | {rms(out, plain):.4f} |{score}",
              flush=True)
    print(f"# total CPU {time.process_time() - c_start:.1f} s")


if __name__ == "__main__":
    main()
