"""DistributedDataParallel under torchrun (WORLD_SIZE > 1): gloo on CPU, NCCL on CUDA."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from convlens.models.devices import resolve_device


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def distributed_from_env() -> DistInfo:
    """torchrun's WORLD_SIZE/RANK/LOCAL_RANK; starts the process group when world > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return info


def pick_device(name: str, info: DistInfo) -> torch.device:
    """The device to train on; "cuda" alone means this rank's local GPU."""
    device = resolve_device(name)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    return device


def mean_over_ranks(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The mean of `values` over all ranks (unchanged in a single process)."""
    if info.world > 1:
        dist.all_reduce(values)
        values /= info.world
    return values


def barrier(info: DistInfo) -> None:
    if info.world > 1:
        dist.barrier()
