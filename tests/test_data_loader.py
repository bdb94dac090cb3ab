"""Collate, the sharded resumable sampler, and loader determinism across worker counts and resumes."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import Tensor

from data_helpers import make_sample
from ssd.data.dataset import Sample
from ssd.data.loader import ShardedSampler, WorkerSeeder, build_loader, collate, set_epoch
from ssd.data.transforms import AugmentedDataset, TrainTransform
from ssd.errors import SSDError


def tiny_samples(n: int) -> list[Sample]:
    """``n`` random 24x32 images with ``i % 3 + 1`` boxes each."""
    g = torch.Generator().manual_seed(0)
    samples = []
    for i in range(n):
        k = i % 3 + 1
        xy = torch.rand(k, 2, generator=g) * torch.tensor([20.0, 14.0])
        boxes = torch.cat([xy, xy + torch.tensor([10.0, 8.0])], dim=1)
        image = torch.randint(0, 256, (3, 24, 32), dtype=torch.uint8, generator=g)
        no = torch.zeros(k, dtype=torch.bool)
        samples.append(make_sample(image, boxes, torch.arange(1, k + 1), no, no.clone(), image_id=i))
    return samples


def test_collate_drops_none_and_keeps_boxes_per_image():
    a = (torch.zeros(3, 4, 4), {"boxes": torch.zeros(2, 4), "labels": torch.tensor([1, 2])})
    b = (torch.ones(3, 4, 4), {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)})
    images, targets = collate([a, None, b, None])
    assert len(images) == 2 and images[0] is a[0] and images[1] is b[0]
    assert [len(t["boxes"]) for t in targets] == [2, 0]
    assert collate([None, None]) == ([], [])


def test_sampler_order_depends_on_seed_and_epoch_only():
    s = ShardedSampler(50, seed=3)
    first = list(s)
    assert sorted(first) == list(range(50)) and first != list(range(50))
    assert list(ShardedSampler(50, seed=3)) == first
    s.set_epoch(1)
    assert list(s) != first
    s.set_epoch(0)
    assert list(s) == first
    assert list(ShardedSampler(50, seed=4)) != first
    assert list(ShardedSampler(7, shuffle=False)) == list(range(7))


def test_two_ranks_split_one_permutation_with_padding():
    ranks = [ShardedSampler(11, seed=1, rank=r, world_size=2) for r in range(2)]
    for s in ranks:
        s.set_epoch(5)
    parts = [list(s) for s in ranks]
    whole = ranks[0].global_order().tolist()  # 11 indices, padded to 12 with the first one again
    assert len(whole) == 12 and sorted(whole[:11]) == list(range(11)) and whole[11] == whole[0]
    assert parts[0] == whole[0::2] and parts[1] == whole[1::2]
    assert [len(s) for s in ranks] == [6, 6]
    assert sorted(parts[0] + parts[1][:-1]) == list(range(11))  # disjoint cover, then one repeat
    cut = [list(ShardedSampler(11, seed=1, rank=r, world_size=2, drop_last=True)) for r in range(2)]
    assert len(cut[0]) == len(cut[1]) == 5 and not set(cut[0]) & set(cut[1])  # drop_last: tail cut, no repeats
    with pytest.raises(ValueError):
        ShardedSampler(11, rank=2, world_size=2)


def test_starting_part_way_gives_the_tail_of_the_epoch():
    s = ShardedSampler(20, seed=9, rank=1, world_size=2)
    s.set_epoch(2)
    full = list(s)
    s.set_start(4)
    assert list(s) == full[4:] and len(s) == 6


def collect(loader, epochs: list[tuple[int, int]]) -> list[tuple[list[Tensor], list[dict]]]:
    batches = []
    for epoch, start in epochs:
        set_epoch(loader, epoch, start_batch=start)
        batches.extend(list(loader))
    return batches


def assert_same_batches(a, b) -> None:
    assert len(a) == len(b)
    for (images_a, targets_a), (images_b, targets_b) in zip(a, b):
        assert [t["image_id"] for t in targets_a] == [t["image_id"] for t in targets_b]
        assert all(torch.equal(x, y) for x, y in zip(images_a, images_b))
        assert all(torch.equal(x["boxes"], y["boxes"]) for x, y in zip(targets_a, targets_b))


def test_augmented_batches_do_not_depend_on_workers_and_resume_exactly():
    data = AugmentedDataset(tiny_samples(10), TrainTransform(16), seed=11)
    serial = build_loader(data, 3, shuffle=True, seed=11)
    reference = collect(serial, [(0, 0), (1, 0)])
    assert len(reference) == 8 and [len(images) for images, _ in reference[:4]] == [3, 3, 3, 1]
    parallel = build_loader(
        AugmentedDataset(tiny_samples(10), TrainTransform(16), seed=11), 3, shuffle=True, num_workers=2, seed=11
    )
    assert parallel.persistent_workers
    # two epochs through the same persistent workers, then a resume at batch 2 of epoch 1
    assert_same_batches(collect(parallel, [(0, 0), (1, 0)]), reference)
    assert_same_batches(collect(parallel, [(1, 2)]), reference[6:])
    assert_same_batches(collect(serial, [(0, 1)]), reference[1:4])
    assert len(serial) == 3  # batches left in the resumed epoch


class RandomNumbers(torch.utils.data.Dataset):
    """Items drawn from each worker's ``random``, numpy and torch generators."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int):
        return torch.tensor([random.random(), np.random.rand(), torch.rand(()).item()]), {"image_id": index}


def test_worker_seeds_follow_the_base_seed():
    def draws(seed: int) -> Tensor:
        loader = build_loader(RandomNumbers(), 1, shuffle=False, num_workers=2, seed=seed)
        set_epoch(loader, 0)
        return torch.stack([images[0] for images, _ in loader])

    a = draws(0)  # [4 items, 3 generators]
    assert torch.equal(a, draws(0))
    assert (a != draws(1)).all()  # every generator follows the seed
    assert (a[0] != a[1]).all()  # items 0 and 1 come from different workers, seeded apart


def test_worker_seeder_separates_ranks_workers_and_epochs():
    states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()

    def draws(rank: int, worker_id: int, epoch: int) -> list[float]:
        sampler = ShardedSampler(8, rank=rank, world_size=2)
        sampler.set_epoch(epoch)
        WorkerSeeder(seed=4, sampler=sampler)(worker_id)
        return [random.random(), float(np.random.rand()), float(torch.rand(()))]

    try:
        a = draws(0, 0, 0)
        assert a == draws(0, 0, 0)
        for other in (draws(1, 0, 0), draws(0, 1, 0), draws(0, 0, 1)):
            assert all(x != y for x, y in zip(a, other))
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])


def test_distributed_without_process_group_is_an_error():
    with pytest.raises(SSDError, match="torch.distributed"):
        build_loader(tiny_samples(2), 1, shuffle=False, distributed=True)
