"""From a run config to objects: the one place process and model names are looked up."""

from __future__ import annotations

from typing import Any

from .config import ModelConfig, ProcessConfig
from .model_denoiser import ModelDenoiser
from .processes import EDM, VE, DiscreteVP, Flow, GaussianProcess, SubVP, VPLinear
from .schedules import make_betas


def build_process(cfg: ProcessConfig) -> GaussianProcess:
    """The forward process named by cfg.name."""
    if cfg.name == "ddpm":
        return DiscreteVP(make_betas(cfg.schedule, cfg.T, zero_terminal_snr=cfg.zero_terminal_snr))
    if cfg.name == "vp":
        return VPLinear(cfg.beta_min, cfg.beta_max)
    if cfg.name == "subvp":
        return SubVP(cfg.beta_min, cfg.beta_max)
    if cfg.name == "ve":
        return VE(cfg.sigma_min, cfg.sigma_max)
    if cfg.name == "edm":
        return EDM(cfg.sigma_min, cfg.sigma_max)
    if cfg.name == "flow":
        return Flow()
    raise ValueError(f"unknown process {cfg.name!r}; choose ddpm, vp, subvp, ve, edm or flow")


def build_model(model_cfg: ModelConfig, process_cfg: ProcessConfig) -> tuple[ModelDenoiser, Any]:
    """(denoiser wrapping a fresh backbone, the backbone's typed config)."""
    from .nn import build_backbone

    backbone, bcfg = build_backbone(model_cfg.backbone, dict(model_cfg.params))
    learned = bool(getattr(bcfg, "learned_variance", False))
    model = ModelDenoiser(backbone, build_process(process_cfg), model_cfg.prediction,
                          sigma_data=model_cfg.sigma_data, learned_variance=learned)
    return model, bcfg
