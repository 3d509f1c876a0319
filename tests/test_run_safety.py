"""A run is never lost: an empty dataset is refused at once."""

import time

import pytest

from torchdiffusion.config import RunConfig, from_dict
from torchdiffusion.train.trainer import Trainer

from test_train_cli import TINY


# ---- 7. an empty dataset is refused at construction, not looped over forever

def test_an_empty_dataset_is_refused_at_once(tmp_path):
    cfg = from_dict(RunConfig, {**TINY, "data": {"name": "digits", "options": {"limit": 0}}})
    t0 = time.monotonic()
    with pytest.raises(ValueError, match=r"dataset 'digits' with options \{'limit': 0\} has no items"):
        Trainer(cfg, tmp_path / "run", progress=False, quiet=True)
    assert time.monotonic() - t0 < 5
