"""Batches for the model: collate, a resumable seeded sampler that shards across ranks, and the DataLoader.

Exact resume: the sampler's order is a function of (seed, epoch) and ``AugmentedDataset``'s augmentation a
function of (seed, epoch, index); after ``set_epoch(loader, epoch, start_batch=k)`` the loader yields exactly
batches k, k+1, ... of what an uninterrupted epoch would have yielded, whatever the number of workers.
"""

from __future__ import annotations

import math
import random
import signal
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import SSDError
from .transforms import Target, derive_seed

_SAMPLER_STREAM = 1  # keeps the sampler's random stream apart from the augmentation's and the workers'
_WORKER_STREAM = 2


def collate(batch: list[tuple[Tensor, Target] | None]) -> tuple[list[Tensor], list[Target]]:
    """``[(image, target) | None] -> (images, targets)``: lists, since images may hold different numbers of boxes.

    ``None`` items (bad samples) are dropped, so a batch can come out shorter, or empty.
    """
    items = [item for item in batch if item is not None]
    return [image for image, _ in items], [target for _, target in items]


class ShardedSampler(Sampler[int]):
    """A seeded permutation of ``range(num_samples)``, split among ``world_size`` ranks, resumable mid-epoch.

    Each epoch every rank draws the same global permutation (from ``seed`` and the epoch; ``arange`` when not
    shuffling). Like ``DistributedSampler``, it is padded by repeating its head until its length divides by
    ``world_size`` (or, with ``drop_last``, its tail is cut instead); rank ``r`` takes positions ``r, r + world_size,
    ...``. ``set_start(k)`` skips this rank's first ``k`` indices, so a resumed epoch yields exactly the tail of
    the uninterrupted one.
    """

    def __init__(
        self,
        num_samples: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.num_samples = num_samples
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_start(self, start: int) -> None:
        """Skip this rank's first ``start`` indices of the epoch (``batch_index * batch_size`` to resume)."""
        self.start = start

    @property
    def per_rank(self) -> int:
        """Indices each rank gets in a whole epoch."""
        if self.drop_last:
            return self.num_samples // self.world_size
        return math.ceil(self.num_samples / self.world_size)

    def global_order(self) -> Tensor:
        """``Tensor[per_rank * world_size]``: this epoch's permutation, padded or cut to divide among the ranks."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch, _SAMPLER_STREAM))
            order = torch.randperm(self.num_samples, generator=generator)
        else:
            order = torch.arange(self.num_samples)
        total = self.per_rank * self.world_size
        if total > len(order):
            order = order.repeat(math.ceil(total / max(len(order), 1)))
        return order[:total]

    def __iter__(self) -> Iterator[int]:
        mine = self.global_order()[self.rank :: self.world_size]
        return iter(mine[self.start :].tolist())

    def __len__(self) -> int:
        return max(self.per_rank - self.start, 0)


class WorkerSeeder:
    """``worker_init_fn``: seeds ``random``, numpy and torch in a worker from (seed, epoch, rank, worker id).

    PyTorch's own worker seeds come from the loader's seed alone, the same on every rank; these differ per rank.
    The epoch is the one when the workers start (persistent workers start once). ``AugmentedDataset`` does not
    need them (it seeds each item); they keep any other randomness in a worker reproducible and distinct.
    """

    def __init__(self, seed: int, sampler: ShardedSampler) -> None:
        self.seed = seed
        self.sampler = sampler

    def __call__(self, worker_id: int) -> None:
        worker_seed = derive_seed(self.seed, self.sampler.epoch, self.sampler.rank, worker_id, _WORKER_STREAM)
        random.seed(worker_seed)
        np.random.seed(worker_seed % 2**32)
        torch.manual_seed(worker_seed)
        # Ctrl-C is the main process's to handle (it saves last.pt): a worker that died of it would turn the
        # clean stop into a "worker exited unexpectedly" error where workers are spawned (macOS, Windows)
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def build_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
    distributed: bool = False,
) -> DataLoader:
    """A ``DataLoader`` of ``collate``d batches with a ``ShardedSampler``; see ``set_epoch`` to start each epoch.

    Shards by rank when ``distributed`` or when ``torch.distributed`` is initialised. ``drop_last`` drops the
    last incomplete batch and, across ranks, cuts the tail instead of padding. Workers are persistent and
    seeded; memory is pinned only when CUDA is available.
    """
    initialized = dist.is_available() and dist.is_initialized()
    if distributed and not initialized:
        raise SSDError("distributed loading needs torch.distributed initialised first (e.g. launch with torchrun)")
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if initialized else (0, 1)
    sampler = ShardedSampler(
        len(dataset), shuffle=shuffle, seed=seed, rank=rank, world_size=world_size, drop_last=drop_last
    )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collate,
        num_workers=num_workers,
        worker_init_fn=WorkerSeeder(seed, sampler),
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(seed),  # for the workers' base seed: leaves the global RNG alone
    )


def set_epoch(loader: DataLoader, epoch: int, start_batch: int = 0) -> None:
    """Start ``epoch`` at batch ``start_batch``: sets the sampler and, if it has one, the dataset's epoch.

    Call before iterating the loader each epoch; ``start_batch > 0`` resumes part-way through.
    """
    sampler: Any = loader.sampler
    sampler.set_epoch(epoch)
    sampler.set_start(start_batch * loader.batch_size)
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)
