"""One denoiser under several conditionings in one call: the branches' kwargs stacked along the batch.

Guidance needs D(x, sigma, **c) for a few kwargs dicts c (conditional, unconditional, negative, ...). When every
branch has the same keys and its tensors stack (same trailing shape, dtype, device), the model runs once on a batch
of n * B instead of n times on B, as in GLIDE and k-diffusion; otherwise each branch is its own call.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from .base import Output, call

Tensor = torch.Tensor


def expand_cond(cond: Mapping[str, Any], batch: int, name: str = "cond") -> dict[str, Any]:
    """cond with tensors of batch 1 broadcast to `batch`; ValueError for a tensor of any other batch size.

    0-d tensors and non-tensors (None, flags) are passed unchanged: they are shared by the whole batch.
    """
    out = {}
    for k, v in cond.items():
        if torch.is_tensor(v) and v.ndim > 0 and v.shape[0] != batch:
            if v.shape[0] != 1:
                raise ValueError(f"{name}[{k!r}] has batch size {v.shape[0]}, but x has batch size {batch} "
                                 "(give one row per sample, or a single row for all)")
            v = v.expand(batch, *v.shape[1:])
        out[k] = v
    return out


def stack_conds(conds: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The branches' kwargs concatenated along the batch, or None where they do not stack."""
    keys = set(conds[0])
    if any(set(c) != keys for c in conds[1:]):
        return None
    out = {}
    for k in keys:
        vals = [c[k] for c in conds]
        first = vals[0]
        if all(torch.is_tensor(v) and v.ndim > 0 for v in vals):
            if any(v.shape != first.shape or v.dtype != first.dtype or v.device != first.device for v in vals):
                return None
            out[k] = torch.cat(vals)
        elif all(v is first for v in vals):  # one shared object: None, a flag, a 0-d tensor
            out[k] = first
        else:
            return None
    return out


def evaluate_branches(denoiser: Any, x: Tensor, sigma: Tensor, conds: Sequence[Mapping[str, Any]],
                      with_variance: bool = False) -> list[Output]:
    """[(D(x, sigma, **c), variance or None) for c in conds]: one call of batch n * B when the kwargs stack."""
    n, B = len(conds), x.shape[0]
    stacked = stack_conds(conds) if n > 1 else None
    if stacked is None:
        return [call(denoiser, x, sigma, dict(c), with_variance) for c in conds]
    x0, frac = call(denoiser, torch.cat([x] * n), torch.cat([sigma] * n), stacked, with_variance)
    fracs = frac.split(B) if frac is not None else [None] * n
    return list(zip(x0.split(B), fracs))
