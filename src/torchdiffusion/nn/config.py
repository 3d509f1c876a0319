"""The one base class every backbone config shares: plain-dict round trip, strict about unknown keys.

Configs are saved beside the weights (safetensors metadata or JSON), so they must survive
`json.dumps(cfg.to_dict())` -> `json.loads` -> `from_dict`, and a typo in a saved key must fail loudly.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from ..typed_dict import from_dict

C = TypeVar("C", bound="BackboneConfig")


class BackboneConfig:
    """Mixin for backbone `@dataclass` configs: `to_dict()` and a strict `from_dict(d)`."""

    def to_dict(self) -> dict[str, Any]:
        """Every field as a plain value (tuples stay tuples; JSON turns them into lists, from_dict back)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[C], d: dict[str, Any]) -> C:
        """Build the config from a dict, strictly (`typed_dict.from_dict`): a ValueError names any unknown key and the
        allowed ones, or a value of the wrong type."""
        return from_dict(cls, d)

    @property
    def data_shape(self) -> tuple[int, ...]:
        """Per-sample shape of its data without the batch dimension: (C, H, W) for the image backbones (which all have
        in_channels and image_size); a vector backbone overrides it."""
        return (int(self.in_channels), int(self.image_size), int(self.image_size))  # type: ignore[attr-defined]

    def check_at_least(self, low: int, *names: str, optional: bool = False) -> None:
        """Raise ValueError naming the first field in `names` below `low` (`optional`: None is also allowed)."""
        for name in names:
            value = getattr(self, name)
            if optional and value is None:
                continue
            if value < low:
                what = f">= {low} or None" if optional else f">= {low}"
                raise ValueError(f"{type(self).__name__}.{name} must be {what}, got {value}")
