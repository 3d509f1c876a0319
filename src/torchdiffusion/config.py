"""Run configuration: typed dataclasses, strict YAML loading, `--set key=value` overrides.

Every error names the key path, the bad value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .typed_dict import ConfigError, from_dict, short

# Bounds on sizes a config can ask for, far above any run this library makes on one machine, so a typo (an extra
# digit) fails at once instead of allocating until the machine gives out; TORCHDIFFUSION_NO_LIMITS=1 lifts them.
LIMITS = {"process.T": 100_000, "train.batch_size": 100_000, "train.max_steps": 100_000_000,
          "sample.steps": 10_000, "sample.num": 1_000_000, "data.limit": 100_000_000,
          "superres.aug_sigma_max": 100.0, "superres.aug_sigma": 100.0}
MAX_BACKBONE_PARAMETERS = 2_000_000_000  # counted on the meta device, before any memory is allocated
NO_LIMITS_ENV = "TORCHDIFFUSION_NO_LIMITS"


def limits_on() -> bool:
    """Whether the size bounds apply (the environment variable TORCHDIFFUSION_NO_LIMITS=1 lifts them)."""
    return os.environ.get(NO_LIMITS_ENV, "") not in ("1", "true", "yes")


def check_bound(name: str, value: float, bound: float) -> None:
    """A ConfigError when a size exceeds its bound, naming the way to lift it."""
    if limits_on() and value > bound:
        raise ConfigError(f"{name}: {value} is above this library's bound of {bound} (a typo?); set "
                          f"{NO_LIMITS_ENV}=1 to allow it deliberately")


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without anchors and aliases: a config never needs them, and a few hundred bytes of nested aliases
    expand to gigabytes (the "billion laughs")."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise ConfigError("YAML aliases (*name) are not allowed in configs; write the values out")
        return super().compose_node(parent, index)


def parse_yaml(text: str, where: str) -> Any:
    """Parsed YAML without aliases; a syntax error is one ConfigError line naming `where`."""
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not valid YAML ({' '.join(str(e).split())})") from None


@dataclass
class DataConfig:
    name: str = "mnist"                          # a name from torchdiffusion.registry.DATASETS
    limit: int | None = None                     # keep only the first N items
    options: dict[str, Any] = field(default_factory=dict)  # loader keyword arguments (e.g. size for textures)


@dataclass
class ProcessConfig:
    name: str = "ddpm"                           # registry.PROCESSES: ddpm | vp | subvp | ve | edm | flow | flow_cosine; token runs:
                                                 # registry.DISCRETE_PROCESSES (masked, absorbing, ...) | autoregressive
    schedule: str = "cosine"                     # beta schedule of ddpm (linear, scaled_linear, cosine, sigmoid, logsnr_linear)
                                                 # or of a D3PM kernel (linear, cosine, mutual_info)
    T: int = 1000                                # number of discrete steps of ddpm or of a D3PM kernel
    vocab_size: int = 0                          # token runs: data classes K ([MASK] or [BOS] come on top)
    masking_schedule: str = "linear"             # masked: alpha(t) = 1 - t (linear) | cosine
    block_size: int | None = None                # masked: block diffusion (BD3-LM) over blocks of this many tokens;
                                                 # None: the whole sequence (MDLM); 1: autoregressive
    marginal: list[float] | None = None          # uniform / gaussian / nearest_neighbour with schedule mutual_info:
                                                 # the data's p(x0) of one token it is solved against (None: uniform)
    zero_terminal_snr: bool = False              # rescale ddpm's table so abar_T = 0 (Lin et al. 2024)
    beta_min: float = 0.1                        # vp / subvp linear beta(t)
    beta_max: float = 20.0
    sigma_min: float = 0.002                     # ve / edm noise range
    sigma_max: float = 80.0


@dataclass
class ModelConfig:
    backbone: str = "unet"                       # registry.BACKBONES: unet | mlp | dit | classifier
    prediction: str = "eps"                      # registry.PREDICTIONS: eps | x0 | v | score | velocity | edm
    sigma_data: float = 0.5                      # data std assumed by edm preconditioning
    params: dict[str, Any] = field(default_factory=dict)  # the backbone's own config (UNetConfig / MLPConfig)


@dataclass
class LossConfig:
    kind: str = "simple"                         # registry.LOSSES: simple | hybrid | edm | classifier (noisy p(y | x_t)) | consistency (iCT);
                                                 # token runs: masked | d3pm | autoregressive
    weighting: str = "uniform"                   # uniform | snr | min_snr | elbo | edm
    t_sampling: str = "uniform"                  # uniform | lognormal | logit_normal (SD3's, for flows)
    coupling: str = "independent"                # data-noise pairing: independent | ot (minibatch OT-CFM; flows only)
    gamma: float = 5.0                           # min-SNR-gamma
    hybrid_lambda: float = 0.001                 # weight of L_vlb in L_hybrid; d3pm: of the cross-entropy per step
    importance_sampling: bool = True             # importance-sample t for L_hybrid


@dataclass
class TrainConfig:
    batch_size: int = 64
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 100                      # linear learning-rate warm-up
    ema_decay: float = 0.999                     # EMA decay, warmed up as min(decay, (1+n)/(10+n))
    grad_clip: float = 1.0                       # max global grad norm (0 disables)
    accumulate: int = 1                          # micro-batches per optimizer step
    micro_batch: int = 0                         # > 0: most items per process per micro-step; derives accumulate
    max_steps: int = 10_000
    log_every: int = 50
    sample_every: int = 1000                     # PNG tiles of EMA samples every N steps (0 disables)
    ckpt_every: int = 1000
    keep_last: int = 3                           # checkpoints kept
    seed: int = 0
    num_threads: int = 0                         # torch threads (0 = leave as is)
    precision: str = "fp32"                      # fp32 | bf16 (autocast of the backbone; fp32 where unsupported)
    cond_drop: float = 0.1                       # P(condition -> null) in training, for classifier-free guidance
    nan_policy: str = "skip"                     # non-finite loss: skip (the step; stop after 10 in a row) | stop
    parallel: str = "ddp"                        # under torchrun: ddp | fsdp (shards a large backbone)


@dataclass
class SampleConfig:
    sampler: str = "unipc"                       # the default rule chosen on held-out mixtures (docs/samplers.md)
    steps: int = 20                              # UniPC: 1 call per step, so 20 calls
    num: int = 64
    options: dict[str, Any] = field(default_factory=dict)  # the sampler's keyword options, e.g. {eta: 0.5} for ddim
    # token runs with model.params.num_classes (classifier-free guidance, docs/discrete.md): `sample`'s defaults for
    # --guidance-scale and --guidance-mode (null: x0, the tilt of p(x0 | x_t); transition: of p(x_s | x_t))
    guidance_scale: float = 1.0
    guidance_mode: str | None = None


@dataclass
class SuperResConfig:
    """Noise conditioning augmentation of a super-resolution model (model.params.low_res_size > 0; Ho et al. 2021,
    "Cascaded Diffusion Models", sec. 3.2): its low_res is the training image average-pooled to low_res_size, plus
    Gaussian noise of std s ~ U[0, aug_sigma_max], and the model is told s (its aug_level)."""

    aug_sigma_max: float = 0.0                   # training: largest std of the noise on low_res (0: clean low_res)
    aug_sigma: float = 0.0                       # sampling (tiles, cascade, upscale): the default std on low_res


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    process: ProcessConfig = field(default_factory=ProcessConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    # latent diffusion (Rombach et al. 2022): an autoencoder run directory (`train-autoencoder --out`) or checkpoint;
    # the model is trained on its scaled latents of the data and its samples are decoded to images
    autoencoder: str | None = None
    superres: SuperResConfig = field(default_factory=SuperResConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """A run config saved by an earlier version, in today's keys: sample.eta (DDIM's, once its only option) is
    sample.options.eta when nonzero."""
    if not isinstance(data, dict):  # not a config at all: from_dict says so with the key path
        return data
    sample = data.get("sample")
    if isinstance(sample, dict) and "eta" in sample:
        sample = dict(sample)
        eta = sample.pop("eta")
        if eta:
            sample["options"] = {"eta": eta, **sample.get("options", {})}
        data = {**data, "sample": sample}
    return data


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set data[a][b][c] = value for dotted = "a.b.c", creating mappings as needed."""
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {k!r} is not a mapping")
    node[keys[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML run config (a path, or the name of a packaged config) and apply key=value overrides."""
    cfg = from_dict(RunConfig, migrate(read_config_data(path, overrides)))
    validate(cfg)
    return cfg


def read_config_data(path: str | Path | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """The mapping of a YAML config (a path, or the name of a packaged config) with key=value overrides applied."""
    data: dict[str, Any] = {}
    if path is not None:
        p = resolve_config_path(path)
        try:
            text = p.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{p}: cannot read the config ({e})") from None
        data = parse_yaml(text, str(p))
        if data is None or data == {}:
            raise ConfigError(f"{p} is empty; a run config needs at least the sections it changes (see the packaged "
                              f"configs, e.g. `torchdiffusion train mnist`)")
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {short(item)}")
        key, raw = item.split("=", 1)
        set_path(data, key.strip(), parse_yaml(raw, f"--set {key.strip()}"))
    return data


PACKAGED = Path(__file__).parent / "configs"
AUTOREGRESSIVE = "autoregressive"  # process.name of a next-token model: no forward corruption, one token at a time
# loss.kind of each kind of token run: the process names it goes with
DISCRETE_LOSSES = {"masked": ("masked",), "d3pm": ("uniform", "absorbing", "gaussian", "nearest_neighbour"),
                   AUTOREGRESSIVE: (AUTOREGRESSIVE,)}


def is_discrete(cfg: RunConfig | ProcessConfig) -> bool:
    """Whether a run (or its process section) models token ids rather than continuous data."""
    from .registry import DISCRETE_PROCESSES

    name = (cfg.process if isinstance(cfg, RunConfig) else cfg).name
    return name == AUTOREGRESSIVE or name in DISCRETE_PROCESSES


def resolve_config_path(path: str | Path) -> Path:
    """A config file path, or a bare name like "mnist" for a config shipped with the package."""
    p = Path(path)
    if p.is_file():
        return p
    packaged = PACKAGED / (p.name if p.suffix else p.name + ".yaml")
    if packaged.is_file():
        return packaged
    known = sorted(q.stem for q in PACKAGED.glob("*.yaml"))
    raise ConfigError(f"config file {str(path)!r} not found (packaged configs: {', '.join(known)})")


def _one_of(path: str, value: Any, allowed: tuple[str, ...] | list[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"{path}: {value!r} is not one of {', '.join(map(str, allowed))}")


def validate(cfg: RunConfig) -> None:
    """Check names and ranges that the dataclass types alone cannot."""
    from .losses import COUPLINGS, T_SAMPLINGS, WEIGHTINGS
    from .registry import BACKBONES, DATASETS, DISCRETE_PROCESSES, LOSSES, PREDICTIONS, PROCESSES, SAMPLERS
    from .sampling import check_options
    from .schedules import BETA_SCHEDULES

    _one_of("process.name", cfg.process.name, PROCESSES.names() + DISCRETE_PROCESSES.names() + [AUTOREGRESSIVE])
    _one_of("model.backbone", cfg.model.backbone, sorted(BACKBONES))
    _one_of("loss.kind", cfg.loss.kind, LOSSES.names())
    if is_discrete(cfg):
        _validate_discrete(cfg)
    else:
        _one_of("process.schedule", cfg.process.schedule, list(BETA_SCHEDULES))
        _one_of("sample.sampler", cfg.sample.sampler, sorted(SAMPLERS))
        if cfg.loss.kind in DISCRETE_LOSSES:
            raise ConfigError(f"loss.kind {cfg.loss.kind!r} is for token runs; it needs process.name one of "
                              f"{', '.join(DISCRETE_LOSSES[cfg.loss.kind])}")
    _one_of("model.prediction", cfg.model.prediction, PREDICTIONS.names())
    if (cfg.loss.kind == "classifier") != (cfg.model.backbone == "classifier"):
        raise ConfigError(f"loss.kind {cfg.loss.kind!r} and model.backbone {cfg.model.backbone!r} do not go together: "
                          "a noise-conditional classifier needs both set to 'classifier'")
    _one_of("loss.weighting", cfg.loss.weighting, WEIGHTINGS)
    _one_of("loss.t_sampling", cfg.loss.t_sampling, T_SAMPLINGS)
    _one_of("loss.coupling", cfg.loss.coupling, COUPLINGS)
    _validate_fewstep(cfg)
    _one_of("train.precision", cfg.train.precision, ("fp32", "bf16"))
    _one_of("train.nan_policy", cfg.train.nan_policy, NAN_POLICIES)
    _one_of("train.parallel", cfg.train.parallel, PARALLEL_MODES)
    _one_of("data.name", cfg.data.name, list(DATASETS))
    tc, pc = cfg.train, cfg.process
    # written as not (v >= lo) so that NaN fails too
    for path, v, lo in [("train.batch_size", tc.batch_size, 1), ("train.max_steps", tc.max_steps, 1),
                        ("train.accumulate", tc.accumulate, 1), ("train.micro_batch", tc.micro_batch, 0),
                        ("process.T", pc.T, 1),
                        ("sample.steps", cfg.sample.steps, 1), ("sample.num", cfg.sample.num, 1),
                        ("train.ckpt_every", tc.ckpt_every, 1), ("train.keep_last", tc.keep_last, 1),
                        ("train.log_every", tc.log_every, 1), ("train.sample_every", tc.sample_every, 0),
                        ("train.warmup_steps", tc.warmup_steps, 0), ("train.num_threads", tc.num_threads, 0),
                        ("train.weight_decay", tc.weight_decay, 0), ("train.grad_clip", tc.grad_clip, 0),
                        ("loss.hybrid_lambda", cfg.loss.hybrid_lambda, 0)]:
        if not v >= lo or v == float("inf"):
            raise ConfigError(f"{path}: must be a finite number >= {lo}, got {v}")
    for path, v in [("train.lr", tc.lr), ("model.sigma_data", cfg.model.sigma_data), ("loss.gamma", cfg.loss.gamma),
                    ("process.beta_min", pc.beta_min), ("process.beta_max", pc.beta_max),
                    ("process.sigma_min", pc.sigma_min), ("process.sigma_max", pc.sigma_max)]:
        if not 0 < v < float("inf"):
            raise ConfigError(f"{path}: must be a finite number > 0, got {v}")
    for path, v, hi in [("train.lr", tc.lr, 1e3), ("train.weight_decay", tc.weight_decay, 1e3)]:
        if v > hi:  # the optimizer's step must stay a float32 number; any such rate only diverges
            raise ConfigError(f"{path}: {v} is above {hi:g}; no training converges at that rate (a typo?)")
    if cfg.data.limit is not None and cfg.data.limit < 1:
        raise ConfigError(f"data.limit: must be >= 1 or null, got {cfg.data.limit}")
    if not pc.sigma_min < pc.sigma_max:
        raise ConfigError(f"process.sigma_min ({pc.sigma_min}) must be < process.sigma_max ({pc.sigma_max})")
    if not pc.beta_min < pc.beta_max:
        raise ConfigError(f"process.beta_min ({pc.beta_min}) must be < process.beta_max ({pc.beta_max})")
    if tc.batch_size % tc.accumulate:
        raise ConfigError(f"train.batch_size ({tc.batch_size}) must be divisible by train.accumulate "
                          f"({tc.accumulate})")
    if not 0 <= tc.ema_decay < 1:
        raise ConfigError(f"train.ema_decay: must be in [0, 1), got {tc.ema_decay}")
    if not 0 <= tc.cond_drop < 1:
        raise ConfigError(f"train.cond_drop: must be in [0, 1), got {tc.cond_drop}")
    for name, bound in LIMITS.items():
        section, key = name.split(".")
        value = getattr(getattr(cfg, section), key)
        if value is not None:
            check_bound(name, value, bound)
    _validate_backbone(cfg.model)
    if cfg.autoencoder is not None and (not cfg.autoencoder.strip() or not Path(cfg.autoencoder).exists()):
        raise ConfigError(f"autoencoder: {cfg.autoencoder!r} does not exist; train an autoencoder first "
                          f"(`torchdiffusion train-autoencoder fashion_mnist_vae --out {cfg.autoencoder}`, or shapes_vae for "
                          f"shapes_text_ldm)")
    if is_discrete(cfg):
        return
    for key, default in (("guidance_scale", 1.0), ("guidance_mode", None)):
        if getattr(cfg.sample, key) != default:
            instead = ("pass --guidance-scale to `sample` instead" if key == "guidance_scale" else
                       "its classifier-free guidance has one form and no mode")
            raise ConfigError(f"sample.{key}: a key of class-conditional token runs (discrete diffusion, "
                              f"docs/discrete.md); this {cfg.process.name} run is Gaussian: {instead}")
    try:
        check_options(cfg.sample.sampler, cfg.sample.options)
    except ValueError as e:
        raise ConfigError(f"sample.options: {e}") from None
    _validate_superres(cfg)
    if cfg.loss.kind == "hybrid" and cfg.process.name != "ddpm":
        raise ConfigError("loss.kind: 'hybrid' needs process.name 'ddpm' (a discrete variational bound)")
    if cfg.loss.kind == "hybrid" and not cfg.model.params.get("learned_variance", False):
        raise ConfigError("loss.kind: 'hybrid' needs model.params.learned_variance: true")


def _validate_superres(cfg: RunConfig) -> None:
    """superres.* finite and >= 0, and only on a super-resolution model (model.params.low_res_size > 0)."""
    sc = cfg.superres
    for name in ("aug_sigma_max", "aug_sigma"):
        v = getattr(sc, name)
        if not 0 <= v < float("inf"):
            raise ConfigError(f"superres.{name}: must be a finite number >= 0, got {v}")
    if (sc.aug_sigma_max or sc.aug_sigma) and not cfg.model.params.get("low_res_size", 0):
        raise ConfigError("superres.aug_sigma_max / superres.aug_sigma apply to a super-resolution model only; "
                          "set model.params.low_res_size (e.g. 7 for 7x7 -> 28x28) or drop them")


FLOW_PROCESSES = ("flow", "flow_cosine")


def _validate_fewstep(cfg: RunConfig) -> None:
    """OT coupling pairs data and noise for a flow's denoising loss; consistency training needs the consistency
    parameterisation on a continuous process."""
    lc = cfg.loss
    if lc.coupling == "ot" and (cfg.process.name not in FLOW_PROCESSES or lc.kind not in ("simple", "edm")):
        raise ConfigError(f"loss.coupling: 'ot' pairs data with noise for flow matching; it needs process.name one of "
                          f"{', '.join(FLOW_PROCESSES)} and loss.kind simple or edm (got {cfg.process.name!r}, "
                          f"{lc.kind!r}); a diffusion process's samplers assume independent noise")
    if lc.kind == "consistency" and (cfg.model.prediction != "consistency" or cfg.process.name == "ddpm"):
        raise ConfigError(f"loss.kind: 'consistency' (consistency training, Song & Dhariwal 2023) needs "
                          f"model.prediction 'consistency' (its boundary condition f(x, sigma_min) = x) and a "
                          f"continuous process (edm, ve, vp, flow...), got {cfg.model.prediction!r} on "
                          f"{cfg.process.name!r}")


def _validate_backbone(mc: ModelConfig) -> None:
    """model.params against the backbone's own config dataclass: key paths, leaf types, its range checks."""
    from .registry import BACKBONES
    config_cls = BACKBONES[mc.backbone].config_class
    try:
        bcfg = from_dict(config_cls, mc.params, "model.params")
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:
        raise ConfigError(f"model.params ({mc.backbone}): {e}") from None
    if limits_on():
        import torch

        try:
            with torch.device("meta"):  # counts the parameters without allocating them
                n = sum(p.numel() for p in BACKBONES[mc.backbone](bcfg).parameters())
        except RuntimeError as e:  # a tensor size past int64: far past the bound, too
            if "overflow" not in str(e):
                raise
            raise ConfigError(f"model.params ({mc.backbone}: parameter count): a weight too large for any tensor; "
                              f"at most {MAX_BACKBONE_PARAMETERS} parameters are allowed") from None
        check_bound(f"model.params ({mc.backbone}: parameter count)", n, MAX_BACKBONE_PARAMETERS)


def _validate_block_size(cfg: RunConfig) -> None:
    """process.block_size (block diffusion, BD3-LM) needs the sequence transformer without time or labels."""
    size, params = cfg.process.block_size, cfg.model.params
    if size is None:
        return
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"process.block_size must be an integer >= 1 (or null: the whole sequence, MDLM), got "
                          f"{size!r}")
    if cfg.model.backbone != "sequence_transformer" or params.get("time_conditioning", True) \
            or params.get("num_classes"):
        raise ConfigError("process.block_size: block diffusion feeds [x_t, x0] through model.backbone "
                          "sequence_transformer with a block attention mask, without time or class conditioning; set "
                          "model.params.time_conditioning: false (masking needs no time, MDLM) and no num_classes, got "
                          f"backbone {cfg.model.backbone!r}, time_conditioning "
                          f"{params.get('time_conditioning', True)}, num_classes {params.get('num_classes', 0)}")


def _validate_discrete(cfg: RunConfig) -> None:
    """A token run: its loss fits its process, its backbone reads sequences, and the vocabulary sizes agree."""
    from .discrete.schedules import BETA_SCHEDULES as D3PM_SCHEDULES
    from .discrete.schedules import MASKING_SCHEDULES
    from .registry import DISCRETE_SAMPLERS

    pc, name = cfg.process, cfg.process.name
    fits = [kind for kind, names in DISCRETE_LOSSES.items() if name in names]
    if cfg.loss.kind not in fits:
        raise ConfigError(f"loss.kind {cfg.loss.kind!r} does not train process.name {name!r}; use loss.kind "
                          f"{fits[0]!r}")
    if not pc.vocab_size >= 2:
        raise ConfigError(f"process.vocab_size: a token run needs the number of data classes (>= 2), got "
                          f"{pc.vocab_size}")
    if name == "masked":
        _one_of("process.masking_schedule", pc.masking_schedule, list(MASKING_SCHEDULES))
        _validate_block_size(cfg)
    elif pc.block_size is not None:
        raise ConfigError(f"process.block_size: block diffusion is a masked process option (process.name masked), "
                          f"got process.name {name!r}")
    if name not in ("masked", AUTOREGRESSIVE):
        _one_of("process.schedule", pc.schedule, list(D3PM_SCHEDULES))
    if pc.marginal is not None:
        if name not in ("uniform", "gaussian", "nearest_neighbour") or pc.schedule != "mutual_info":
            raise ConfigError(f"process.marginal: the data marginal shapes the mutual_info schedule of the uniform, "
                              f"gaussian and nearest_neighbour kernels only; process.name is {name!r}, "
                              f"process.schedule {pc.schedule!r}")
        if len(pc.marginal) != pc.vocab_size or min(pc.marginal) < 0 or not sum(pc.marginal) > 0:
            raise ConfigError(f"process.marginal: need process.vocab_size ({pc.vocab_size}) non-negative numbers "
                              f"with a positive sum, got {pc.marginal}")
    backbones = ("causal_transformer",) if name == AUTOREGRESSIVE else ("sequence_transformer", "token_unet")
    if cfg.model.backbone not in backbones:
        raise ConfigError(f"model.backbone: process.name {name!r} needs {' or '.join(map(repr, backbones))}, got "
                          f"{cfg.model.backbone!r}")
    if name == AUTOREGRESSIVE and cfg.model.params.get("num_classes"):
        raise ConfigError("model.params.num_classes: the autoregressive baseline is unconditional here; class "
                          "conditioning (and guidance) is for the diffusion token runs")
    extra = 0 if name in ("uniform", "gaussian", "nearest_neighbour") else 1  # [MASK] or [BOS]
    classes = cfg.model.params.get("vocab_size")
    if classes != pc.vocab_size + extra:
        what = {0: "", 1: " + [BOS]" if name == AUTOREGRESSIVE else " + [MASK]"}[extra]
        raise ConfigError(f"model.params.vocab_size must be {pc.vocab_size + extra} (process.vocab_size "
                          f"{pc.vocab_size}{what}), got {classes}")
    sampler = AUTOREGRESSIVE if name == AUTOREGRESSIVE else "ancestral"
    if cfg.sample.sampler != sampler:
        raise ConfigError(f"sample.sampler: process.name {name!r} samples with {sampler!r} "
                          f"(registry.DISCRETE_SAMPLERS: {', '.join(DISCRETE_SAMPLERS)}), got {cfg.sample.sampler!r}")
    if cfg.sample.options:
        raise ConfigError(f"sample.options: token samplers take none here, got {cfg.sample.options}")
    _validate_token_guidance(cfg)


def _validate_token_guidance(cfg: RunConfig) -> None:
    """sample.guidance_scale and sample.guidance_mode: a finite scale and a known mode, for a class-conditional
    diffusion token run only."""
    from .discrete.guidance import GUIDANCE_MODES

    sc = cfg.sample
    if sc.guidance_mode is not None:
        _one_of("sample.guidance_mode", sc.guidance_mode, GUIDANCE_MODES)
    if isinstance(sc.guidance_scale, bool) or not isinstance(sc.guidance_scale, (int, float)) or \
            not abs(sc.guidance_scale) < float("inf"):
        raise ConfigError(f"sample.guidance_scale: must be a finite number, got {sc.guidance_scale!r}")
    given = [k for k, on in (("sample.guidance_scale", sc.guidance_scale != 1.0),
                             ("sample.guidance_mode", sc.guidance_mode is not None)) if on]
    if given and not cfg.model.params.get("num_classes"):
        raise ConfigError(f"{' and '.join(given)}: classifier-free guidance needs a class-conditional diffusion "
                          f"model (model.params.num_classes > 0); this {cfg.process.name} run is unconditional")


NAN_POLICIES = ("skip", "stop")
PARALLEL_MODES = ("ddp", "fsdp")
