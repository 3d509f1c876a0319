"""What one request to the page may ask for, checked on the server: counts, sizes and ranges (a browser's own
slider limits are advisory only; a crafted request reaches these checks), each failure one ValueError sentence."""

from __future__ import annotations

import math
from typing import Any

MAX_BATCH = 16             # images per Generate request
MAX_STEPS = 500            # sampler steps, or denoiser calls of an edit
MAX_SEED = 2**63 - 1 - MAX_BATCH  # seeds seed .. seed + batch - 1 all fit torch.Generator.manual_seed
MAX_GUIDANCE = 30.0        # classifier-free guidance scale w
MAX_COMPARE = 4            # sampler / step-count columns of Compare
MAX_UPLOAD = "8mb"         # one uploaded file (gradio refuses larger ones before reading them)
MAX_IMAGE_SIDE = 4096      # pixels of an uploaded image, each side
MAX_PROMPT = 500           # characters of a prompt
MAX_NOISE_STD = 2.0        # measurement noise of an edit, in data units ([-1, 1] images)
MAX_PARTICLES = 256        # SMC particles per row
QUEUE_SIZE = 16            # waiting requests; more are refused with "queue full"


def integer(name: str, value: Any, lo: int, hi: int) -> int:
    """value as an int in [lo, hi] (a float with an integral value is accepted: number boxes send floats)."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
        value = int(value)
    if not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def number(name: str, value: Any, lo: float, hi: float) -> float:
    """value as a finite float in [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not lo <= value <= hi:
        raise ValueError(f"{name} must be a number in [{lo:g}, {hi:g}], got {value!r}")
    return float(value)


def choice(name: str, value: Any, allowed: list[str] | tuple[str, ...]) -> str:
    """value, one of allowed."""
    if value not in allowed:
        raise ValueError(f"{name} {value!r} is not one of {', '.join(map(str, allowed))}")
    return value


def text(name: str, value: Any, limit: int = MAX_PROMPT) -> str:
    """value as a string of at most limit characters (None is the empty string)."""
    value = "" if value is None else value
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, got {type(value).__name__}")
    if len(value) > limit:
        raise ValueError(f"{name} is {len(value)} characters long; at most {limit}")
    return value


def interval(lo: Any, hi: Any) -> tuple[float, float] | None:
    """The guidance interval (lo, hi] in sigma, or None when both are empty (guidance at every level)."""
    if lo in (None, "") and hi in (None, ""):
        return None
    lo, hi = number("guidance interval low", lo, 0, 1e6), number("guidance interval high", hi, 0, 1e6)
    if not lo < hi:
        raise ValueError(f"the guidance interval needs low < high, got ({lo:g}, {hi:g}]")
    return lo, hi


def image_size(name: str, width: int, height: int) -> None:
    """An uploaded image of at most MAX_IMAGE_SIDE pixels a side and at least one."""
    if not (1 <= width <= MAX_IMAGE_SIDE and 1 <= height <= MAX_IMAGE_SIDE):
        raise ValueError(f"{name} is {width}x{height} pixels; each side must lie in [1, {MAX_IMAGE_SIDE}]")


def options(name: str, spec: Any) -> dict[str, Any]:
    """A method's options from a YAML mapping typed in the page (empty: none), numbers finite."""
    import yaml

    spec = text(name, spec, 2000).strip()
    if not spec:
        return {}
    try:
        out = yaml.safe_load(spec)
    except yaml.YAMLError as e:
        raise ValueError(f"{name}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(out, dict) or not all(isinstance(k, str) for k in out):
        raise ValueError(f"{name} must be a mapping such as {{eta: 0.5}}, got {spec!r}")
    for key, value in out.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name}: {key} must be a finite number, got {value}")
    return out
