"""`distill --pair-share S`: with a CPU budget, reflow's pairs are drawn batch by batch until the share S of it is
spent, so a slower CPU draws fewer pairs and keeps the rest of the budget for training; the pairs drawn are those of
a prefix of the same noises. CPU time is a fake clock here: each teacher batch "costs" a fixed number of seconds."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from test_distill_cli import last_json
from torchdiffusion.cli import main
from torchdiffusion.distill import reflow as reflow_mod
from torchdiffusion.distill import run as run_mod
from torchdiffusion.distill.reflow import reflow_pairs


@pytest.fixture
def clock(monkeypatch):
    """A fake process clock that each teacher sampler batch advances by clock['per_batch'] seconds."""
    c = {"t": 0.0, "per_batch": 10.0}
    monkeypatch.setattr(reflow_mod.time, "process_time", lambda: c["t"])  # the time module, shared with run.py
    real = reflow_mod.sample

    def costly(*a, **k):
        c["t"] += c["per_batch"]
        return real(*a, **k)

    monkeypatch.setattr(reflow_mod, "sample", costly)
    return c


def test_reflow_pairs_stop_once_their_cpu_seconds_are_spent_and_keep_a_prefix(gmm, clock):
    z = torch.randn(20, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    full = reflow_pairs(gmm, z, method="heun", nfe=5, batch_size=4)  # 5 batches, unlimited
    assert full.shape == (20, 2)
    clock["t"] = 0.0
    part = reflow_pairs(gmm, z, method="heun", nfe=5, batch_size=4, max_cpu_seconds=25.0)
    assert part.shape == (12, 2)  # batches start at 0, 10 and 20 seconds; at 30 the 25 are spent
    assert torch.equal(part, full[:12])
    one = reflow_pairs(gmm, z, method="heun", nfe=5, batch_size=4, max_cpu_seconds=0.0)
    assert torch.equal(one, full[:4])  # at least one batch, even with nothing left


def test_distill_draws_pairs_within_its_share_of_the_budget_and_trains_on_the_rest(flow_run, tmp_path, clock,
                                                                                    monkeypatch):
    seen = {}

    def fit(*a, max_cpu_minutes=None, start=0, **k):
        seen["budget"] = max_cpu_minutes
        return start

    monkeypatch.setattr(run_mod, "fit", fit)
    clock["per_batch"] = 60.0  # a minute per 128 pairs
    opts = run_mod.DistillOptions(method="reflow", max_steps=4, batch_size=8, pairs=300, pair_nfe=2, pair_share=0.5)
    result = run_mod.distill(flow_run, tmp_path / "half", opts, max_cpu_minutes=3.0, progress=False)
    # a share of 0.5 gives the pairs 90 seconds: batches start at 0 and 60, none at 120
    assert result["pairs"] == 256 and seen["budget"] == pytest.approx(1.0)
    kept = load_file(str(tmp_path / "half" / "reflow_pairs.safetensors"))
    assert kept["z"].shape == kept["x1"].shape == (256, 2)
    noise = torch.randn((300, 2), generator=torch.Generator().manual_seed(opts.seed + 2))
    assert torch.equal(kept["z"], noise[:256])  # the first pairs of the same draw
    result = run_mod.distill(flow_run, tmp_path / "half", opts, max_cpu_minutes=3.0, progress=False)
    assert result["pairs"] == 256  # resumed: the kept pairs, none drawn again
    clock["t"], opts.pair_share = 0.0, 1.0
    assert run_mod.distill(flow_run, tmp_path / "all", opts, max_cpu_minutes=3.0, progress=False)["pairs"] == 300
    opts.pair_share = 0.5
    assert run_mod.distill(flow_run, tmp_path / "unbudgeted", opts, progress=False)["pairs"] == 300


def test_pair_share_on_the_command_line(flow_run, tmp_path, capsys):
    base = ["distill", str(flow_run), "--method", "reflow", "--out", str(tmp_path / "rf"), "--pairs", "16",
            "--pair-nfe", "2", "--batch-size", "8", "--max-steps", "1", "--no-progress"]
    assert main(base + ["--pair-share", "0.25"]) == 0
    assert last_json(capsys)["pairs"] == 16
    for bad in ("1.5", "-0.1", "nan"):
        with pytest.raises(SystemExit) as e:
            main(base + ["--pair-share", bad])
        assert e.value.code == 2
