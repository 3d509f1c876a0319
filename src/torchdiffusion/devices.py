"""Devices: the `auto | cpu | cuda[:N]` choice of every command, and what each device's bf16 support is."""

from __future__ import annotations

import torch

DEVICE_CHOICES = "auto | cpu | cuda | cuda:N"


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """'auto' (CUDA when a GPU is there, else the CPU), 'cpu', 'cuda' or 'cuda:N' as a checked torch.device."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ValueError(f"unknown device {spec!r}; choose {DEVICE_CHOICES}") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ValueError(f"device {spec!r} is not supported; choose {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        raise ValueError(f"device {spec!r} asked for, but this PyTorch sees no CUDA GPU; use --device cpu or auto")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {spec!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                         f"numbered from 0")
    return device


def bf16_supported(device: torch.device) -> bool:
    """Whether bfloat16 autocast pays off on this device: native kernels on the GPU, or AVX512-BF16 / AMX on the
    CPU (elsewhere the CPU emulates it and runs slower than float32)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def uses_bf16(precision: str, device: torch.device) -> bool:
    """Whether a run of `train.precision` computes under bfloat16 autocast on this device: asked for (bf16) and
    native there (`bf16_supported`); float32 otherwise. `train` and `distill` both follow it."""
    return precision == "bf16" and bf16_supported(device)
