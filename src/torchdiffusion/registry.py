"""The one registry of names: every process, prediction type, training loss, backbone, dataset and sampler that a
config, the CLI or `sample` can name (and the discrete processes and samplers of `torchdiffusion.discrete`), each
mapped to where it lives.

Entries are "module:attribute" paths resolved on first use, so this module imports nothing of the library and any
layer may read it without an import cycle; it is the only place a name is turned into code. Adding a component
means writing it in its own file, adding its line here, and testing it (tests/test_registry.py resolves every
entry and checks what it resolves to).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any


class Registry(Mapping[str, Any]):
    """Names of one kind of component -> the object at "module:attribute", imported when first looked up."""

    def __init__(self, kind: str, entries: dict[str, str]):
        self.kind, self._paths, self._resolved = kind, dict(entries), {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._paths:
            raise KeyError(name)
        if name not in self._resolved:
            module, _, attr = self._paths[name].partition(":")
            self._resolved[name] = getattr(importlib.import_module(module), attr)
        return self._resolved[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        return list(self._paths)

    def lookup(self, name: str) -> Any:
        """The component registered as `name`, or a ValueError naming the kind and every registered name."""
        if name not in self._paths:
            raise ValueError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self._paths)}")
        return self[name]


_P = "torchdiffusion.processes:"
PROCESSES = Registry("process", {  # GaussianProcess subclasses, built by their from_config(ProcessConfig)
    "ddpm": _P + "DiscreteVP", "vp": _P + "VPLinear", "subvp": _P + "SubVP", "ve": _P + "VE", "edm": _P + "EDM",
    "flow": _P + "Flow", "flow_cosine": _P + "FlowCosine",
})

_Q = "torchdiffusion.predictions:"
PREDICTIONS = Registry("prediction type", {  # Prediction subclasses
    "eps": _Q + "EpsPrediction", "x0": _Q + "X0Prediction", "v": _Q + "VPrediction", "score": _Q + "ScorePrediction",
    "velocity": _Q + "VelocityPrediction", "edm": _Q + "EDMPrecond", "consistency": _Q + "ConsistencyPrecond",
})

_L = "torchdiffusion.losses.objectives:"
LOSSES = Registry("loss kind", {  # TrainingObjective instances: what the trainer minimises (config loss.kind)
    "simple": _L + "SIMPLE", "edm": _L + "EDM", "hybrid": _L + "HYBRID", "classifier": _L + "CLASSIFIER",
    "consistency": _L + "CONSISTENCY",
    # token runs (losses.discrete.DiscreteObjective): MDLM's bound, D3PM's hybrid loss, next-token cross-entropy
    "masked": "torchdiffusion.losses.discrete:MASKED", "d3pm": "torchdiffusion.losses.discrete:D3PM",
    "autoregressive": "torchdiffusion.losses.discrete:AUTOREGRESSIVE",
})

BACKBONES = Registry("backbone", {  # nn.Module classes with a `config_class` (a BackboneConfig dataclass)
    "unet": "torchdiffusion.nn.unet:UNet", "mlp": "torchdiffusion.nn.mlp:MLP", "dit": "torchdiffusion.nn.dit:DiT",
    "classifier": "torchdiffusion.nn.classifier:NoisyClassifier",
    "sequence_transformer": "torchdiffusion.nn.sequence:SequenceTransformer",
    "causal_transformer": "torchdiffusion.nn.sequence:CausalTransformer",
    "token_unet": "torchdiffusion.nn.token_unet:TokenUNet",  # grey-level ids (B, H * W) -> logits (B, H * W, K)
})

_D, _T = "torchdiffusion.data.images:", "torchdiffusion.data.toy2d:"
DATASETS = Registry("dataset", {  # loaders (**options) -> (data, labels)
    "mnist": _D + "load_mnist", "fashion_mnist": _D + "load_fashion_mnist", "digits": _D + "load_digits",
    "textures": _D + "load_textures", "lfw": _D + "load_lfw_faces", "shapes": "torchdiffusion.data.shapes:load_shapes_dataset",
    "toy:swiss_roll": _T + "load_swiss_roll", "toy:moons": _T + "load_moons",
    "toy:eight_gaussians": _T + "load_eight_gaussians", "toy:checkerboard": _T + "load_checkerboard",
    "kjv": "torchdiffusion.data.kjv:load_kjv",  # token ids (N, seq_len): King James Bible characters
    # token ids (N, 784): Fashion-MNIST quantised to data.options.levels grey levels, raster order
    "fashion_mnist_levels": "torchdiffusion.data.quantized:load_fashion_mnist_levels",
})
CAPTIONS = Registry("captioned dataset", {  # loaders (**the dataset's options) -> one caption per item
    "shapes": "torchdiffusion.data.shapes:load_shapes_captions",
})

_S = "torchdiffusion.sampling."
SAMPLERS = Registry("sampler", {  # sampling.method.Method objects, each beside its function
    # probability-flow ODE
    "euler": _S + "ode:EULER", "heun": _S + "ode:HEUN", "rk4": _S + "ode:RK4", "dopri5": _S + "adaptive:DOPRI5",
    "ddim": _S + "ddim:DDIM", "dpm_solver_1": _S + "dpm_solver:DPM_SOLVER_1",
    "dpm_solver_2": _S + "dpm_solver:DPM_SOLVER_2", "dpm_solver_3": _S + "dpm_solver:DPM_SOLVER_3",
    "dpmpp_2s": _S + "dpmpp:DPMPP_2S", "dpmpp_2m": _S + "dpmpp:DPMPP_2M", "dpmpp_3m": _S + "dpmpp:DPMPP_3M",
    "unipc": _S + "unipc:UNIPC", "lms": _S + "lms:LMS", "ipndm": _S + "lms:IPNDM",
    # stochastic
    "ddpm": _S + "ddpm:DDPM", "euler_ancestral": _S + "ancestral:EULER_ANCESTRAL",
    "dpmpp_2s_ancestral": _S + "dpmpp:DPMPP_2S_ANCESTRAL", "dpmpp_2m_sde": _S + "dpmpp:DPMPP_2M_SDE",
    "edm_stochastic": _S + "ancestral:EDM_STOCHASTIC", "em": _S + "sde:EM", "pc": _S + "sde:PC", "ald": _S + "sde:ALD",
    # few-step students, on the few-step grid they are trained on (docs/fewstep.md)
    "consistency": _S + "fewstep:CONSISTENCY", "ddim_fewstep": _S + "fewstep:DDIM_FEWSTEP",
})

_X = "torchdiffusion.discrete."
DISCRETE_PROCESSES = Registry("discrete process", {  # CategoricalProcess subclasses over K token classes
    "uniform": _X + "interpolating:Uniform", "absorbing": _X + "interpolating:Absorbing",
    "gaussian": _X + "matrix:DiscretizedGaussian", "nearest_neighbour": _X + "matrix:NearestNeighbour",
    "masked": _X + "masked:MaskedDiffusion",
})
DISCRETE_SAMPLERS = Registry("discrete sampler", {  # discrete.sampling.DiscreteMethod objects
    "ancestral": _X + "sampling:ANCESTRAL", "autoregressive": _X + "autoregressive:AUTOREGRESSIVE",
})

_I = "torchdiffusion.inverse."
INVERSE = Registry("inverse method", {  # inverse.method.InverseMethod objects, each beside its function
    "replacement": _I + "replacement:REPLACEMENT", "repaint": _I + "replacement:REPAINT", "dps": _I + "dps:DPS",
    "pigdm": _I + "dps:PIGDM", "ddrm": _I + "ddrm:DDRM", "smc": _I + "smc:SMC",
})

REGISTRIES: dict[str, Registry] = {r.kind: r for r in (PROCESSES, PREDICTIONS, LOSSES, BACKBONES, DATASETS, CAPTIONS,
                                                         SAMPLERS, INVERSE, DISCRETE_PROCESSES, DISCRETE_SAMPLERS)}
