"""Argument checks for the public API boundaries: one line each, a message naming the argument and what it got."""

from __future__ import annotations

from typing import Any

import torch

Tensor = torch.Tensor


def describe(x: Any) -> str:
    """'float32 tensor of shape (2, 3) on cpu', or the type name of a non-tensor."""
    if isinstance(x, Tensor):
        return f"{str(x.dtype).removeprefix('torch.')} tensor of shape {tuple(x.shape)} on {x.device}"
    return type(x).__name__


def check_batch(name: str, x: Any, *, min_dims: int = 1) -> Tensor:
    """x must be a floating-point tensor (batch, ...) with at least min_dims dims and at least one row."""
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < min_dims or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty floating-point tensor (batch, ...) with at least {min_dims} "
                         f"dims, got {describe(x)}")
    return x


def check_data(name: str, x: Any, *, discrete: bool = False) -> Tensor:
    """x must be a finite float batch of at least 2 dims; `discrete`: also on [-1, 1], as the bin-based decoders of
    the variational bound assume (uint8 data scaled by x / 127.5 - 1)."""
    check_batch(name, x, min_dims=2)
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} has NaN or infinite entries ({describe(x)})")
    if discrete and (x.min() < -1 or x.max() > 1):
        raise ValueError(f"{name} must lie in [-1, 1] (uint8 data scaled by x / 127.5 - 1) for the discretized "
                         f"decoder, got values in [{x.min().item():.3g}, {x.max().item():.3g}]")
    return x


def check_matches_module(name: str, x: Tensor, module: torch.nn.Module) -> None:
    """x must live on the device and have the dtype of the module's weights (when it has any)."""
    p = next(module.parameters(), None)
    if p is None:
        return
    if x.device != p.device:
        raise ValueError(f"{name} is on {x.device} but the model is on {p.device}; move one of them (x.to(...))")
    if x.dtype != p.dtype and not torch.is_autocast_enabled(x.device.type):
        raise ValueError(f"{name} is {describe(x)} but the model's weights are {p.dtype}; cast it (x.to({p.dtype}))")


def check_per_sample(name: str, v: Any, batch: int, *, shape: tuple[int, ...] | None = None) -> None:
    """v must be a tensor of shape (batch,) (or (batch, *shape) when shape is given)."""
    want = (batch, *(shape or ()))
    if not isinstance(v, Tensor) or tuple(v.shape) != want:
        raise ValueError(f"{name} must be a tensor of shape {want}, got {describe(v)}")


def check_backbone_input(owner: str, x: Tensor, shape: str, ndim: int, channels: int,
                         class_labels: Tensor | None = None, num_classes: int = 0) -> None:
    """A backbone's x (B, channels, ...) of ndim dims, and class labels (B,) integers in [0, num_classes]."""
    if x.ndim != ndim or x.shape[1] != channels or 0 in x.shape:
        raise ValueError(f"{owner} takes x of shape {shape} with {channels} at dim 1, got {describe(x)}")
    if class_labels is not None and num_classes > 0:
        if (not isinstance(class_labels, Tensor) or class_labels.shape != (x.shape[0],)
                or class_labels.is_floating_point() or class_labels.dtype == torch.bool):
            raise ValueError(f"class_labels must be an integer tensor of shape ({x.shape[0]},), "
                             f"got {describe(class_labels)}")
        if bool((class_labels < 0).any()) or bool((class_labels > num_classes).any()):
            raise ValueError(f"class_labels must be in [0, {num_classes}] ({num_classes} = null label), got values "
                             f"in [{int(class_labels.min())}, {int(class_labels.max())}]")
