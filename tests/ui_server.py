"""Start `torchdiffusion ui` in a subprocess for the page's tests, and train the small run they serve."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
TINY_UI = {  # test_train_cli.TINY with a sample grid every step, for the Watch tab
    "data": {"name": "digits", "limit": 64},
    "process": {"name": "ddpm", "schedule": "cosine", "T": 50},
    "model": {"backbone": "unet", "prediction": "v",
              "params": {"in_channels": 1, "image_size": 8, "base_channels": 8, "channel_mult": [1, 2],
                         "num_res_blocks": 1, "attn_resolutions": [4], "num_heads": 2}},
    "train": {"batch_size": 8, "lr": 1e-3, "warmup_steps": 2, "ckpt_every": 3, "log_every": 1, "sample_every": 1,
              "keep_last": 2},
    "sample": {"sampler": "ddim", "steps": 3, "num": 4},
}


def train_tiny(run_dir: Path, steps: int = 3) -> Path:
    """TINY_UI trained for a few steps on the CPU (a second or two)."""
    import yaml

    from torchdiffusion.config import load_config
    from torchdiffusion.train.trainer import train

    cfg = run_dir.parent / f"{run_dir.name}.yaml"
    cfg.write_text(yaml.safe_dump(TINY_UI))
    train(load_config(cfg), run_dir, max_steps=steps, progress=False, device="cpu")
    return run_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(root: Path, *args: str, timeout: float = 120.0) -> tuple[subprocess.Popen, str]:
    """(the server process, its URL) once it has printed the URL; the caller stops it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "torchdiffusion", "ui", str(root), "--device", "cpu", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline, seen = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        m = re.search(r"serving .* at (http://\S+?)/? \(", line)
        if m:
            return proc, m.group(1)
    proc.kill()
    raise RuntimeError("the ui server did not start:\n" + "".join(seen[-30:]))


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def listening_addresses(port: int) -> list[str]:
    """The local addresses of the LISTEN sockets on port, from /proc/net/tcp and tcp6 (Linux)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in open(table).read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if state == "0A" and int(p, 16) == port:  # 0A: LISTEN
                if len(addr) == 8:  # IPv4, little-endian bytes
                    found.append(".".join(str(int(addr[i:i + 2], 16)) for i in (6, 4, 2, 0)))
                else:
                    found.append("ipv6:" + addr)
    return found
