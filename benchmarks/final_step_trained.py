"""UniPC's last step on trained models: FID with the default rule's extrapolated last step against the plain D step.

The default rule extrapolates UniPC's last 3 D's to sigma = 0 (`unipc.final_denoise`, `final_order` 3); its weights
grow on fine grids, so a network's error at the lowest levels could be amplified. For each run and NFE, N samples
from the same start noises are drawn with `final_order` 1 and 3 and scored by FID (decoded for a latent model) against
the dataset's test split on the library's feature network, as `eval` does.

    PYTHONPATH=src python benchmarks/final_step_trained.py --runs runs/fmnist,runs/fmnist_ldm --nfe 10,20 --num 1000
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from step_cache import FID
from torchdiffusion.generate import start_noise
from torchdiffusion.loading import load_run
from torchdiffusion.sampling import sample


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", required=True, help="comma-separated run directories of image models")
    ap.add_argument("--nfe", default="10,20")
    ap.add_argument("--num", type=int, default=1000, help="samples per FID")
    ap.add_argument("--batch", type=int, default=250)
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(f"# {platform.processor() or platform.machine()}, 1 thread, torch {torch.__version__}, FID of {a.num}")
    print("| run | NFE | FID, final_order 1 | FID, final_order 3 (default) | CPU s each |")
    print("|---|---:|---:|---:|---:|")
    for run in a.runs.split(","):
        loaded = load_run(run)
        fid = FID(loaded)
        for nfe in (int(v) for v in a.nfe.split(",")):
            scores, c0 = {}, time.process_time()
            for order in (1, 3):
                images = []
                for i in range(0, a.num, a.batch):  # the same start noises for both orders
                    x = start_noise(loaded.model, loaded.data_shape, min(a.batch, a.num - i), 100 + i)
                    with torch.no_grad():
                        z = sample(loaded.model, x, method="unipc", nfe=nfe, final_order=order)
                    images.append(loaded.decode(z).clamp(-1, 1))
                scores[order] = fid.score(torch.cat(images))
            print(f"| {run} | {nfe} | {scores[1]:.2f} | {scores[3]:.2f} | {(time.process_time() - c0) / 2:.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
