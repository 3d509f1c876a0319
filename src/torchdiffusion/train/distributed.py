"""Multi-process training on torch.distributed: set-up from torchrun's environment, rank helpers, reductions.

`torchrun --nproc_per_node N -m torchdiffusion train CONFIG` sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous
variables; `Dist.from_env()` reads them (a plain `python -m torchdiffusion` run is world size 1 and touches none
of this). Gloo on CPU, NCCL when CUDA is available.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..config import PARALLEL_MODES, ConfigError


@dataclass(frozen=True)
class Dist:
    """This process's place in the job: rank, world size, local rank and the device it trains on."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @classmethod
    def from_env(cls, device: torch.device = torch.device("cpu")) -> "Dist":
        """Join the process group torchrun describes in the environment; without torchrun, world size 1 on `device`."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            if device.type == "cuda":
                torch.cuda.set_device(device)
            return cls(device=device)
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
            backend = "nccl"
        else:
            device, backend = torch.device("cpu"), "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend, rank=rank, world_size=world)
        return cls(rank, world, local_rank, device)

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def mean(self, value: float) -> float:
        """The mean of a float over ranks (for logging; every rank gets it)."""
        if not self.active:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t) / self.world

    def gather(self, t: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's copy of an equally shaped tensor, in rank order (on every rank)."""
        if not self.active:
            return [t]
        t = t.to(self.device)
        out = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(out, t)
        return [o.cpu() for o in out]

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's JSON-able object, in rank order (on every rank)."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def shutdown(self) -> None:
        if self.active and dist.is_initialized():
            dist.destroy_process_group()


def wrap_backbone(backbone: nn.Module, d: Dist, parallel: str) -> nn.Module:
    """The backbone as trained: itself (1 process), DistributedDataParallel, or sharded in place with FSDP2."""
    if not d.active:
        return backbone
    if parallel == "ddp":
        ids = [d.device.index] if d.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(backbone, device_ids=ids)
    if parallel == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(d.device.type, (d.world,))
        for unit in _blocks(backbone):  # one FSDP unit per top-level block, then the root
            fully_shard(unit, mesh=mesh)
        fully_shard(backbone, mesh=mesh)
        return backbone
    raise ValueError(f"train.parallel: {parallel!r} is not one of {', '.join(PARALLEL_MODES)}")


def _blocks(module: nn.Module) -> list[nn.Module]:
    """Top-level submodules with parameters, looking inside ModuleList/ModuleDict (which are never called)."""
    out = []
    for child in module.children():
        if isinstance(child, (nn.ModuleList, nn.ModuleDict)):
            out += _blocks(child)
        elif any(True for _ in child.parameters()):
            out.append(child)
    return out


def full_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers by name, whole on every rank (FSDP shards are all-gathered; a collective)."""
    out = {}
    for name, t in [*module.named_parameters(), *module.named_buffers()]:
        t = t.detach()
        out[name] = t.full_tensor() if hasattr(t, "full_tensor") else t
    return out


def split_batch(batch_size: int, accumulate: int, world: int, micro_batch: int = 0) -> tuple[int, int]:
    """(accumulation steps A, items per rank per micro-step b) with A * world * b = batch_size, the global batch.

    micro_batch = 0 keeps the configured A; micro_batch > 0 derives the fewest A whose per-rank micro-batch fits in
    micro_batch items, so the same config runs on any number of processes (and memory bounds the micro-batch).
    """
    if micro_batch > 0:
        if accumulate != 1:
            raise ConfigError(f"train.micro_batch ({micro_batch}) derives train.accumulate; leave accumulate at 1 "
                              f"(got {accumulate})")
        fits = [a for a in range(1, batch_size + 1)
                if batch_size % (a * world) == 0 and batch_size // (a * world) <= micro_batch]
        if not fits:
            raise ConfigError(f"train.batch_size {batch_size} does not split evenly over {world} processes; use a "
                              f"multiple of {world}")
        accumulate = fits[0]
    micro = batch_size // accumulate  # the global micro-batch; each rank trains on micro / world of it
    if batch_size % accumulate or micro % world:
        raise ConfigError(f"train.batch_size: {batch_size} / train.accumulate {accumulate} = {micro} items per "
                          f"micro-batch do not split evenly over {world} processes; use a batch size divisible by "
                          f"{accumulate * world}, or set train.micro_batch to derive the accumulation")
    return accumulate, micro // world
