"""Random draws from a generator that may live on another device than the tensor they are for: the draw happens on
the generator's device and is then moved, so a run's CPU-seeded streams give the same numbers on a CPU and a GPU."""

from __future__ import annotations

import torch


def _draw(fn, shape: tuple[int, ...], generator: torch.Generator | None, dtype: torch.dtype,
          device: torch.device | str) -> torch.Tensor:
    if generator is None:
        return fn(shape, dtype=dtype, device=device)
    return fn(shape, generator=generator, dtype=dtype, device=generator.device).to(device)


def randn(shape: tuple[int, ...], generator: torch.Generator | None = None, *, dtype: torch.dtype = torch.float32,
          device: torch.device | str = "cpu") -> torch.Tensor:
    """Standard normal draws of `shape` on `device`, from `generator` wherever it lives."""
    return _draw(torch.randn, tuple(shape), generator, dtype, device)


def rand(shape: tuple[int, ...], generator: torch.Generator | None = None, *, dtype: torch.dtype = torch.float32,
         device: torch.device | str = "cpu") -> torch.Tensor:
    """Uniform [0, 1) draws of `shape` on `device`, from `generator` wherever it lives."""
    return _draw(torch.rand, tuple(shape), generator, dtype, device)
