"""The one registry of names: every entry resolves to the kind of object its table promises, and the config, the
trainer and `sample` accept exactly the registered names."""

import inspect

import pytest
import torch
from torch import nn

from torchdiffusion.config import ConfigError, load_config
from torchdiffusion.losses import TrainingObjective
from torchdiffusion.nn.config import BackboneConfig
from torchdiffusion.predictions import Prediction
from torchdiffusion.processes import GaussianProcess
from torchdiffusion.discrete import CategoricalProcess
from torchdiffusion.discrete.sampling import DiscreteMethod
from torchdiffusion.registry import (BACKBONES, CAPTIONS, DATASETS, DISCRETE_PROCESSES, DISCRETE_SAMPLERS, LOSSES,
                                     PREDICTIONS, PROCESSES, REGISTRIES, SAMPLERS, Registry)
from torchdiffusion.sampling.method import Method


@pytest.mark.parametrize("registry, check", [
    (PROCESSES, lambda c: issubclass(c, GaussianProcess) and inspect.ismethod(c.from_config)),
    (PREDICTIONS, lambda c: issubclass(c, Prediction) and c is not Prediction),
    (LOSSES, lambda o: isinstance(o, TrainingObjective)),
    (BACKBONES, lambda c: issubclass(c, nn.Module) and issubclass(c.config_class, BackboneConfig)),
    (DATASETS, callable), (CAPTIONS, callable),
    (SAMPLERS, lambda m: isinstance(m, Method) and callable(m.fn)),
    (DISCRETE_PROCESSES, lambda c: issubclass(c, CategoricalProcess) and not inspect.isabstract(c)),
    (DISCRETE_SAMPLERS, lambda m: isinstance(m, DiscreteMethod) and callable(m.fn)),
], ids=lambda r: getattr(r, "kind", ""))
def test_every_entry_resolves_to_its_kind(registry, check):
    assert len(registry) > 0
    for name in registry:
        assert check(registry[name]), (registry.kind, name)


def test_a_prediction_class_is_registered_under_its_own_name():
    assert all(PREDICTIONS[name].name == name for name in PREDICTIONS)


@pytest.mark.parametrize("name", PROCESSES.names())
def test_each_registered_process_builds_from_the_default_config(name):
    cfg = load_config(None, [f"process.name={name}"])
    p = PROCESSES[name].from_config(cfg.process)
    t = torch.tensor([p.t_min, p.t_max], dtype=torch.float64)
    assert torch.isfinite(p.sigma_ve(t)).all() and p.sigma_ve_min < p.sigma_ve_max


def test_lookup_names_the_kind_and_every_choice():
    with pytest.raises(ValueError, match=r"unknown sampler 'dddim'; choose one of euler, heun, .*ipndm"):
        SAMPLERS.lookup("dddim")
    with pytest.raises(KeyError):
        Registry("thing", {"a": "torchdiffusion.registry:Registry"})["b"]
    assert set(REGISTRIES) == {"process", "prediction type", "loss kind", "backbone", "dataset", "captioned dataset",
                               "sampler", "inverse method", "discrete process", "discrete sampler"}


@pytest.mark.parametrize("key, registry", [("process.name", PROCESSES), ("model.prediction", PREDICTIONS),
                                           ("loss.kind", LOSSES), ("model.backbone", BACKBONES),
                                           ("data.name", DATASETS), ("sample.sampler", SAMPLERS)])
def test_the_config_accepts_exactly_the_registered_names(key, registry):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.") + ": 'no_such_name' is not one of"):
        load_config(None, [f"{key}=no_such_name"])
    msg = ""
    try:
        load_config(None, [f"{key}=no_such_name"])
    except ConfigError as e:
        msg = str(e)
    assert all(name in msg for name in registry)
