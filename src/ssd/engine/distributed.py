"""torch.distributed set-up for ``torchrun``: device choice, process group, rank-0 helpers, gathering."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..errors import SSDError


@dataclass
class DistInfo:
    """Where this process runs: its rank among ``world_size`` processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def select_device(name: str | None = None, local_rank: int = 0) -> torch.device:
    """``auto`` (or None): CUDA, then MPS, then CPU; otherwise the named device (``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""
    if name in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SSDError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SSDError(f"device {name!r} asked for, but CUDA is not available here")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def init_distributed(device_name: str | None = None) -> DistInfo:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1): NCCL on GPUs, Gloo on CPU."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(device_name, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world_size, local_rank, device)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


@contextmanager
def local_main_first(info: DistInfo) -> Iterator[None]:
    """Run the block on each node's first process (``LOCAL_RANK`` 0) before the node's others, which wait at a
    barrier: the first can write a cache (e.g. an annotation index) that the others then read.

    Every process passes the barrier once, also when the first one's block raises (the others then run theirs and
    meet the same error instead of waiting). Without a process group the block just runs.
    """
    if info.local_rank != 0:
        barrier()
    try:
        yield
    finally:
        if info.local_rank == 0:
            barrier()


def gather_to_main(items: list[Any]) -> list[Any]:
    """Concatenate every rank's list on all ranks (small Python objects, e.g. detections moved to CPU)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return items
    gathered: list[list[Any]] = [[] for _ in range(dist.get_world_size())]
    dist.all_gather_object(gathered, items)
    return [item for part in gathered for item in part]


def max_over_processes(info: DistInfo, *values: float) -> tuple[float, ...]:
    """Each value's maximum over all processes (one small all-reduce; the values themselves without torchrun)."""
    if not info.distributed:
        return tuple(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=info.device)  # NCCL reduces GPU tensors only
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tuple(tensor.tolist())


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
