"""Autoencoders for latent diffusion on Fashion-MNIST: reconstruction FID of test images, rate, and the GAN's effect.

Two KL autoencoders (configs/fashion_mnist_vae.yaml, 28x28x1 -> 7x7x4) train for equal CPU time: one with the
patch discriminator switched on after --disc-start steps (adaptive weight of Esser et al. 2021), one without
(loss.disc_weight 0). Each EMA autoencoder reconstructs --num test images never seen in training; the report gives
the reconstruction FID (reconstructions vs the same originals) on the library's feature network (the cached
Fashion-MNIST classifier of `torchdiffusion train-features`, trained first if missing; its CPU time is counted), the
mean L1 error and PSNR, and the rate. A real-vs-real floor (two disjoint halves of the test split) is given for
scale. No perceptual loss is used: the only offline feature network is the FID network itself, and training on it
would flatter the FID.

    PYTHONPATH=src nice -n 5 .venv/bin/python benchmarks/autoencoder_fmnist.py --max-cpu-minutes 15 \\
        --out runs/bench_ae
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

from torchdiffusion.data import load_dataset, save_image_tiles
from torchdiffusion.evaluate.data import load_featurizer
from torchdiffusion.latent import AutoencoderTrainer, load_autoencoder, load_autoencoder_config
from torchdiffusion.metrics import fid_from_features


def reconstruct(run: Path, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    ae = load_autoencoder(run)
    with torch.no_grad():
        return torch.cat([ae.decode(ae.encode(x[i:i + batch])).clamp(-1, 1) for i in range(0, len(x), batch)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-cpu-minutes", type=float, default=15.0, help="total CPU budget (features + 2 runs + eval)")
    ap.add_argument("--eval-reserve", type=float, default=1.5, help="CPU minutes kept for reconstructions and FID")
    ap.add_argument("--disc-start", type=int, default=1500, help="step at which the GAN run's discriminator starts")
    ap.add_argument("--num", type=int, default=2000, help="test images reconstructed")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("runs/bench_ae"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    c0 = time.process_time()
    featurizer, feat_info = load_featurizer(None, "fashion_mnist")
    test, _ = load_dataset("fashion_mnist", split="test")
    x, floor_b = test[:a.num], test[a.num:2 * a.num]
    real_feats = featurizer.embed(x)[0]
    floor = fid_from_features(real_feats, featurizer.embed(floor_b)[0])
    spent = (time.process_time() - c0) / 60
    per_run = (a.max_cpu_minutes - spent - a.eval_reserve) / 2
    if per_run <= 0:
        sys.exit(f"--max-cpu-minutes {a.max_cpu_minutes} leaves nothing for training after {spent:.1f} CPU-min")
    rows = []
    for name, sets in [("gan", [f"loss.disc_start={a.disc_start}"]), ("no_gan", ["loss.disc_weight=0"])]:
        cfg = load_autoencoder_config("fashion_mnist_vae", sets + [f"train.num_threads={a.threads}",
                                                                   "train.sample_every=0"])
        run = a.out / name
        result = AutoencoderTrainer(cfg, run, progress=False, device="cpu").run(max_cpu_minutes=per_run)
        t0 = time.process_time()
        rec = reconstruct(run, x)
        fid = fid_from_features(real_feats, featurizer.embed(rec)[0])
        mse = float((rec - x).pow(2).mean())
        rows.append({"autoencoder": name, "steps": result["step"], "train_cpu_minutes": round(result["cpu_seconds"] / 60, 2),
                     "reconstruction_fid": round(fid, 3), "l1": round(float((rec - x).abs().mean()), 4),
                     "psnr_db": round(10 * math.log10(4.0 / mse), 2), "eval_cpu_seconds": round(time.process_time() - t0, 1),
                     **cfg.model.rate})
        save_image_tiles(torch.cat([x[:16], rec[:16]]), a.out / f"recon_{name}.png", nrow=16)
        print(json.dumps(rows[-1]), flush=True)
    report = {"command": " ".join(sys.argv), "machine": f"{platform.processor() or platform.machine()}, "
              f"{a.threads} torch thread(s), torch {torch.__version__}",
              "features": {k: feat_info.get(k) for k in ("path", "dim", "test_accuracy")},
              "test_images": a.num, "real_vs_real_fid_floor": round(floor, 3), "rows": rows,
              "total_cpu_minutes": round((time.process_time() - c0) / 60, 2)}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
