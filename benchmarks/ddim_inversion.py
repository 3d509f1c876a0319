"""Inversion then reconstruction error against NFE, for the deterministic samplers inversion runs backwards.

Two denoisers. The analytic Gaussian mixture (8 x 8 images from a 64-D mixture, exact denoiser): its
probability-flow map is invertible, so the reconstruction error is the samplers' discretisation error alone and
must fall to 0 at their order (DDIM 1, Heun 2). A trained model (`--model`, e.g. digits trained on the first 1500
images with `--set data.limit=1500`): images it never saw (`--test-from`), where the error also carries the
network's departures from an exact flow (the map it defines is still invertible in the limit).
Nothing is tuned, so there is no choose / report split: every row is a measurement.

    PYTHONPATH=src .venv/bin/python benchmarks/ddim_inversion.py --model runs/digits1500 --test-from 1500 \\
        --max-cpu-minutes 10
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from torchdiffusion.analytic import GaussianMixture
from torchdiffusion.data import load_dataset
from torchdiffusion.inverse import INVERTIBLE, ddim_invert
from torchdiffusion.loading import load_run


def cpu_name() -> str:
    """lscpu's model name, from /proc/cpuinfo."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def mixture(seed: int = 0) -> GaussianMixture:
    """Four components over 8 x 8 images: smooth random means in [-1, 1], variances 0.02-0.1 per pixel."""
    g = torch.Generator().manual_seed(seed)
    means = torch.nn.functional.avg_pool2d(torch.randn(4, 1, 16, 16, generator=g, dtype=torch.float64), 2)
    means = (means / means.abs().amax((1, 2, 3), keepdim=True)).reshape(4, 64)
    var = 0.02 + 0.08 * torch.rand(4, 64, generator=g, dtype=torch.float64)
    return GaussianMixture(torch.ones(4) / 4, means, var)


class Images:
    """An 8 x 8 image view of the 64-D mixture's denoiser (flattened in, reshaped out)."""

    def __init__(self, gmm: GaussianMixture):
        self.gmm, self.sigma_min, self.sigma_max, self.sigma_data = gmm, 0.002, 80.0, 0.5

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self.gmm(x.reshape(len(x), -1), sigma).reshape(x.shape)


def table(title: str, rows: dict[str, list[tuple[int, float, float]]]) -> str:
    nfes = sorted({n for r in rows.values() for n, _, _ in r})
    out = [f"**{title}** (RMS reconstruction error per pixel in [-1, 1] units, mean over images; max in brackets)",
           "", "| sampler | " + " | ".join(f"NFE {n}" for n in nfes) + " |", "|---|" + "---:|" * len(nfes)]
    for name, r in rows.items():
        cells = {n: f"{m:.2e} ({mx:.1e})" for n, m, mx in r}
        out.append(f"| {name} | " + " | ".join(cells.get(n, "-") for n in nfes) + " |")
    return "\n".join(out)


def sweep(denoiser, x0: torch.Tensor, nfes: list[int], deadline: float) -> dict[str, list[tuple[int, float, float]]]:
    """Per sampler, (nfe, mean RMS error, max RMS error) until the CPU deadline."""
    rows: dict[str, list[tuple[int, float, float]]] = {}
    for name in INVERTIBLE:
        rows[name] = []
        for n in nfes:
            if time.process_time() > deadline:
                print(f"  (budget reached: {name} stops before NFE {n})")
                break
            err = ddim_invert(denoiser, x0, nfe=n, method=name).error
            rows[name].append((n, float(err.mean()), float(err.max())))
            print(f"  {name:5s} NFE {n:4d}: {float(err.mean()):.3e}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="run directory of an image model (omit: the mixture only)")
    ap.add_argument("--dataset", default="digits", help="where the test images come from")
    ap.add_argument("--test-from", type=int, default=1500, help="test images are the dataset's from this index on")
    ap.add_argument("--num", type=int, default=64, help="test images (and mixture draws)")
    ap.add_argument("--nfe", default="5,10,20,50,100,200")
    ap.add_argument("--max-cpu-minutes", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    start = time.process_time()
    nfes = [int(n) for n in a.nfe.split(",")]
    share = a.max_cpu_minutes * 60 / (2 if a.model else 1)
    print(f"machine: {cpu_name()}, {torch.get_num_threads()} thread(s)")

    gmm = mixture()
    x0 = gmm.sample(a.num, generator=torch.Generator().manual_seed(1))[0].reshape(a.num, 1, 8, 8)
    print("analytic mixture (8 x 8, exact denoiser, sigma 0.002-80)")
    mix = sweep(Images(gmm), x0, nfes, start + share)
    tables = [table(f"Analytic mixture, {a.num} draws", mix)]
    if a.model:
        loaded = load_run(a.model)
        data, _ = load_dataset(a.dataset)
        test = data[a.test_from:a.test_from + a.num]
        limit = loaded.config.data.limit  # the model trained on the dataset's first `limit` images (None: all)
        seen = "unseen" if limit is not None and limit <= a.test_from else "seen in training"
        where = f"{len(test)} {a.dataset} images [{a.test_from}:{a.test_from + len(test)}], {seen}"
        print(f"{a.model} (step {loaded.meta['step']}), {where}")
        with torch.no_grad():
            trained = sweep(loaded.model, test, nfes, time.process_time() + share)
        tables.append(table(f"{a.model} (step {loaded.meta['step']}), {where}", trained))
    print("\n" + "\n\n".join(tables))
    print(f"\nCPU time: {(time.process_time() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
