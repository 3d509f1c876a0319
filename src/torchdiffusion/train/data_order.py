"""Data order for every training loop: a permutation per epoch from (seed, epoch), so a run's position in its data
is two integers (epoch, pos) that a checkpoint stores and a resumed run continues exactly."""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def epoch_order(seed: int, epoch: int, count: int) -> Tensor:
    """The permutation of range(count) that epoch `epoch` of a run seeded `seed` visits."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(count, generator=g)


def next_indices(order: Tensor, pos: int, epoch: int, n: int, seed: int) -> tuple[Tensor, Tensor, int, int]:
    """(the next n dataset indices, the order, pos and epoch after them), crossing epoch boundaries."""
    count = len(order)
    idx, got = [], 0
    while got < n:
        take = min(n - got, count - pos)
        idx.append(order[pos:pos + take])
        pos, got = pos + take, got + take
        if pos == count:
            epoch, pos = epoch + 1, 0
            order = epoch_order(seed, epoch, count)
    return torch.cat(idx), order, pos, epoch
