"""Device choice, DistInfo, and the rank helpers alone and in a real two-process Gloo group."""

import json
import os
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from process_helpers import free_port, join_within
from ssd.engine.distributed import (
    DistInfo,
    broadcast_object,
    cleanup,
    gather_to_main,
    init_distributed,
    local_main_first,
    max_over_processes,
    select_device,
)
from ssd.errors import SSDError


@pytest.fixture
def cpu_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.fixture
def fake_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


@pytest.mark.parametrize("name", [None, "", "auto"])
def test_auto_picks_the_cpu_without_accelerators(cpu_only, name):
    assert select_device(name) == torch.device("cpu")


def test_auto_picks_the_local_ranks_gpu_when_cuda_is_there(fake_cuda):
    assert select_device("auto", local_rank=3) == torch.device("cuda", 3)


def test_named_devices(fake_cuda):
    assert select_device("cpu", local_rank=1) == torch.device("cpu")
    assert select_device("cuda", local_rank=2) == torch.device("cuda", 2)  # the local rank's GPU
    assert select_device("cuda:1", local_rank=2) == torch.device("cuda", 1)  # an explicit index wins


@pytest.mark.parametrize("name", ["gpu0", "cuda:x"])
def test_a_bad_device_name_is_an_error_naming_it(name):
    with pytest.raises(SSDError, match=f"unknown device '{name}'; use auto, cpu"):
        select_device(name)


@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_cuda_without_cuda_is_an_error(cpu_only, name):
    with pytest.raises(SSDError, match=f"device '{name}' asked for, but CUDA is not available"):
        select_device(name)


def test_dist_info_properties():
    single = DistInfo()
    assert (single.rank, single.world_size, single.device) == (0, 1, torch.device("cpu"))
    assert single.is_main and not single.distributed
    assert DistInfo(rank=0, world_size=2).is_main and DistInfo(rank=0, world_size=2).distributed
    other = DistInfo(rank=1, world_size=2, local_rank=1)
    assert not other.is_main and other.distributed


def test_without_a_process_group_the_helpers_are_identities(monkeypatch, cpu_only):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    info = init_distributed("auto")
    assert info == DistInfo(0, 1, 0, torch.device("cpu")) and not dist.is_initialized()
    assert max_over_processes(info, 1.5, -2.0) == (1.5, -2.0)
    items, obj = [{"a": 1}, 2], {"key": [1, 2]}
    assert gather_to_main(items) is items and broadcast_object(obj) is obj
    ran = []
    with local_main_first(info):
        ran.append(True)
    assert ran == [True]


def _worker(rank: int, world_size: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    info = init_distributed("cpu")
    try:
        result = {
            "info": [info.rank, info.world_size, info.local_rank, str(info.device), info.is_main, info.distributed],
            "max": max_over_processes(info, float(rank), 10.0 - rank, -1.0),
            "broadcast": broadcast_object({"from": rank, "values": [rank] * 3}),
            "gathered": gather_to_main([f"r{rank}a", f"r{rank}b"] if rank == 0 else [f"r{rank}a"]),
        }
    finally:
        cleanup()
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(result))


def test_helpers_in_a_two_process_gloo_group(tmp_path):
    # forked, the processes start at once with torch and ssd imported (spawned, each re-imports them: ~7 s on 2
    # cores); they run neither CUDA nor OpenMP work, which a fork could not carry over
    args = (2, free_port(), str(tmp_path))
    context = mp.start_processes(_worker, args=args, nprocs=2, join=False, start_method="fork")
    join_within(context, 120, "the two Gloo processes did not finish within 120 s")
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert results[0]["info"] == [0, 2, 0, "cpu", True, True]
    assert results[1]["info"] == [1, 2, 1, "cpu", False, True]
    for result in results:
        assert result["max"] == [1.0, 10.0, -1.0]
        assert result["broadcast"] == {"from": 0, "values": [0, 0, 0]}
        assert result["gathered"] == ["r0a", "r0b", "r1a"]  # rank order, every rank's list whole


def record(path: Path, event: str) -> None:
    """Append one line to ``path`` in a single write (O_APPEND: lines of concurrent processes never mix)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        os.write(fd, f"{event}\n".encode())
    finally:
        os.close(fd)


def events(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _local_main_first_worker(rank: int, world_size: int, port: int, out: str, local_ranks: list[int]) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(local_ranks[rank]),
    )  # fmt: skip
    torch.set_num_threads(1)
    info = init_distributed("cpu")
    log = Path(out) / "events.txt"
    try:
        with local_main_first(info):
            record(log, f"start {rank}")
            if rank == 0:  # the other process is free to start meanwhile, unless it waits for this one
                deadline = time.monotonic() + (0.3 if local_ranks == [0, 1] else 60)
                while "start 1" not in events(log) and time.monotonic() < deadline:
                    time.sleep(0.02)
            record(log, f"end {rank}")
        after = max_over_processes(info, float(rank))  # one barrier each: the next collective still pairs up
    finally:
        cleanup()
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(after))


@pytest.mark.parametrize(
    ("local_ranks", "expected"),
    [
        ([0, 1], ["start 0", "end 0", "start 1", "end 1"]),  # one node: its first process runs the block first
        ([0, 0], None),  # two nodes of one process each: both first on their node, neither waits for the other
    ],
)
def test_local_main_first_runs_the_block_on_each_nodes_first_process_first(tmp_path, local_ranks, expected):
    args = (2, free_port(), str(tmp_path), local_ranks)
    context = mp.start_processes(_local_main_first_worker, args=args, nprocs=2, join=False, start_method="fork")
    join_within(context, 120, "the two Gloo processes did not finish within 120 s")
    order = events(tmp_path / "events.txt")
    if expected is not None:
        assert order == expected
    else:
        assert order.index("start 1") < order.index("end 0") and sorted(order) == [
            "end 0",
            "end 1",
            "start 0",
            "start 1",
        ]
    for rank in range(2):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == [1.0]


@pytest.mark.parametrize(("cache", "waits"), [("on", True), ("off", False)])
def test_the_second_process_of_a_node_waits_for_the_datasets_only_with_the_index_cache(monkeypatch, cache, waits):
    """With the cache off there is no index to share, and waiting would only double the time to start."""
    from ssd.engine import train as train_module

    barriers = []
    monkeypatch.setattr("ssd.engine.distributed.barrier", lambda: barriers.append(True))
    monkeypatch.setenv("SSD_INDEX_CACHE", cache)
    with train_module.building_datasets(DistInfo(rank=1, world_size=2, local_rank=1)):
        assert barriers == ([True] if waits else [])  # the second process waited before its block
    assert len(barriers) == (1 if waits else 0)
