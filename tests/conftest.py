import os
import sys

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("TORCHDIFFUSION_QUIET", "1")


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture
def gmm():
    from torchdiffusion.analytic import GaussianMixture

    means = torch.tensor([[-2.0, 0.5], [1.5, 1.5], [0.5, -2.0]], dtype=torch.float64)
    var = torch.tensor([[0.3, 0.1], [0.05, 0.2], [0.15, 0.15]], dtype=torch.float64)
    return GaussianMixture(torch.tensor([0.5, 0.3, 0.2]), means, var)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A run directory of test_train_cli.TINY trained for 2 steps on the CPU (one per test module)."""
    import yaml

    from test_train_cli import TINY
    from torchdiffusion.config import load_config
    from torchdiffusion.train.trainer import train

    out = tmp_path_factory.mktemp("tiny")
    cfg = out / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    train(load_config(cfg), out / "run", max_steps=2, progress=False, device="cpu")
    return out / "run"


@pytest.fixture(scope="module")
def flow_run(tmp_path_factory):
    """A run directory of test_distill_cli.FLOW (a 2-D flow-matching MLP, OT coupling) trained for 10 steps."""
    import yaml

    from test_distill_cli import FLOW
    from torchdiffusion.cli import main

    out = tmp_path_factory.mktemp("flow")
    (out / "flow.yaml").write_text(yaml.safe_dump(FLOW))
    assert main(["train", str(out / "flow.yaml"), "--out", str(out / "run"), "--max-steps", "10",
                 "--no-progress"]) == 0
    return out / "run"
