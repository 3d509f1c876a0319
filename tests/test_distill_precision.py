"""`distill` distils a teacher as it was trained: a `train.precision: bf16` teacher's reflow pairs and the
student's steps run under CPU bfloat16 autocast where the CPU has native bfloat16 kernels, and in float32
elsewhere or for an fp32 teacher."""

from __future__ import annotations

import copy

import pytest
import torch
import yaml

from test_distill_cli import FLOW
from torchdiffusion import devices
from torchdiffusion.cli import main


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny flow runs, trained in fp32 and in bf16."""
    out = tmp_path_factory.mktemp("precision")
    made = {}
    for precision in ("fp32", "bf16"):
        cfg = copy.deepcopy(FLOW)
        cfg["train"]["precision"] = precision
        (out / f"{precision}.yaml").write_text(yaml.safe_dump(cfg))
        assert main(["train", str(out / f"{precision}.yaml"), "--out", str(out / precision), "--max-steps", "2",
                     "--no-progress"]) == 0
        made[precision] = out / precision
    return made


@pytest.mark.parametrize("precision,native,expect", [("bf16", True, True), ("bf16", False, False),
                                                     ("fp32", True, False)])
def test_pairs_and_student_steps_follow_the_teachers_precision(runs, tmp_path, monkeypatch, precision, native,
                                                               expect):
    import torchdiffusion.distill.run as run_mod

    monkeypatch.setattr(devices, "bf16_supported", lambda device: native)
    seen = {"pairs": [], "steps": []}
    real_pairs, real_loss = run_mod.reflow_pairs, run_mod.ReflowDistiller.loss

    def pairs(*a, **k):
        seen["pairs"].append(torch.is_autocast_enabled("cpu"))
        return real_pairs(*a, **k)

    def loss(self, *a, **k):
        seen["steps"].append(torch.is_autocast_enabled("cpu"))
        return real_loss(self, *a, **k)

    monkeypatch.setattr(run_mod, "reflow_pairs", pairs)
    monkeypatch.setattr(run_mod.ReflowDistiller, "loss", loss)
    opts = run_mod.DistillOptions(method="reflow", max_steps=3, batch_size=8, pairs=16, pair_nfe=2)
    result = run_mod.distill(runs[precision], tmp_path / "rf", opts, progress=False)
    assert result["step"] == 3
    assert seen == {"pairs": [expect], "steps": [expect] * 3}
    assert not torch.is_autocast_enabled("cpu")  # left as found


@pytest.mark.parametrize("method", ["reflow", "progressive", "consistency"])
def test_a_bf16_students_weights_stay_float32_and_finite(runs, tmp_path, monkeypatch, method):
    """Every method trains under autocast (its teacher calls too); the student's weights stay float32."""
    import torchdiffusion.distill.run as run_mod
    from torchdiffusion.loading import load_run

    monkeypatch.setattr(devices, "bf16_supported", lambda device: True)  # emulated where not native: still right
    opts = run_mod.DistillOptions(method=method, max_steps=4, batch_size=8, pairs=16, pair_nfe=2, start_steps=4)
    run_mod.distill(runs["bf16"], tmp_path / "rf", opts, progress=False)
    params = list(load_run(tmp_path / "rf").model.parameters())
    assert all(p.dtype == torch.float32 and bool(torch.isfinite(p).all()) for p in params)
