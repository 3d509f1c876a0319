"""Typed dataclasses from plain dicts (parsed YAML or JSON metadata): strict about unknown keys and leaf types, so a
typo in a config or a saved checkpoint fails loudly with its dotted key path. Run configs and backbone configs both
use it; it imports nothing of the library."""

from __future__ import annotations

import dataclasses
from dataclasses import fields
from typing import Any, get_type_hints


def short(value: Any, limit: int = 80) -> str:
    """repr(value) cut to `limit` characters: a message never carries an unbounded copy of user data."""
    r = repr(value)
    return r if len(r) <= limit else r[:limit - 3] + "..."


class ConfigError(ValueError):
    """A configuration key or value that cannot be used, with its dotted path."""


def _coerce(value: Any, typ: Any, path: str) -> Any:
    """Check (and gently coerce int -> float) a leaf value against its annotated type."""
    allowed = getattr(typ, "__args__", None)
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if allowed and type(None) in allowed:
        if value is None:
            return None
        typ = next(a for a in allowed if a is not type(None))
        return _coerce(value, typ, path)
    origin = getattr(typ, "__origin__", None)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {short(value)}")
        return tuple(_coerce(v, typ.__args__[0], f"{path}[{i}]") for i, v in enumerate(value))
    check = origin or typ
    if check is bool and not isinstance(value, bool):
        raise ConfigError(f"{path}: expected true/false, got {short(value)}")
    if check is int and (not isinstance(value, int) or isinstance(value, bool)):
        raise ConfigError(f"{path}: expected an integer, got {short(value)}")
    if check in (float, str, dict) and not isinstance(value, check):
        raise ConfigError(f"{path}: expected {check.__name__}, got {short(value)}")
    return value


def from_dict(cls: type, data: dict[str, Any] | None, path: str = "") -> Any:
    """Build a config dataclass from a nested dict, rejecting unknown keys by their dotted path."""
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {short(data)}")
    hints = get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in data.items():
        p = f"{path}.{key}" if path else key
        if key not in names:
            raise ConfigError(f"unknown config key {p!r}; allowed keys here: {', '.join(names)}")
        typ = hints[key]
        kwargs[key] = from_dict(typ, value, p) if dataclasses.is_dataclass(typ) else _coerce(value, typ, p)
    return cls(**kwargs)
