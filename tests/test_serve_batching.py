"""DynamicBatcher: images that arrive together share a batch, each result goes back to its request, a failing
batch fails its requests only, and stopping fails what still waits."""

import asyncio

import pytest
import torch

from ssd.errors import SSDError
from ssd.serve.batching import Busy, DynamicBatcher


class Recorder:
    """A ``run_batch`` that doubles each image and records the batch sizes; fails on a NaN image."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def __call__(self, images):
        if any(torch.isnan(image).any() for image in images):
            raise RuntimeError("the model failed")
        self.sizes.append(len(images))
        return [image * 2 for image in images]


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, timeout=30))


def test_requests_that_arrive_together_share_a_batch_and_get_their_own_result():
    async def scenario(max_batch, max_wait_ms, count):
        recorder = Recorder()
        batcher = DynamicBatcher(recorder, max_batch, max_wait_ms)
        await batcher.start()
        results = await asyncio.gather(*(batcher.submit(torch.tensor([float(k)])) for k in range(count)))
        await batcher.stop()
        return recorder.sizes, [float(r) for r in results], batcher.stats.to_dict()

    sizes, results, stats = run(scenario(max_batch=4, max_wait_ms=200, count=10))
    assert sizes == [4, 4, 2] and results == [2.0 * k for k in range(10)]
    assert stats == {"requests": 10, "batches": 3, "batch_sizes": {"2": 1, "4": 2}}
    sizes, _, _ = run(scenario(max_batch=1, max_wait_ms=200, count=5))
    assert sizes == [1] * 5  # batching off


def test_a_batch_waits_only_for_requests_on_their_way():
    async def scenario():
        recorder = Recorder()
        batcher = DynamicBatcher(recorder, max_batch=8, max_wait_ms=10_000)
        await batcher.start()
        alone = await batcher.submit(torch.tensor([1.0]))  # nobody else coming: no 10 s wait
        with batcher.incoming():
            first = asyncio.ensure_future(batcher.submit(torch.tensor([2.0])))
            await asyncio.sleep(0.1)  # the batch waits for the request that is uploading
            assert not first.done()
        second = await batcher.submit(torch.tensor([3.0]))
        await batcher.stop()
        return float(alone), float(await first), float(second), recorder.sizes

    assert run(scenario()) == (2.0, 4.0, 6.0, [1, 2])


def test_a_lone_request_does_not_wait_for_a_full_batch():
    async def scenario():
        batcher = DynamicBatcher(Recorder(), max_batch=64, max_wait_ms=0)
        await batcher.start()
        first = await batcher.submit(torch.tensor([1.0]))
        second = await batcher.submit(torch.tensor([2.0]))
        await batcher.stop()
        return float(first), float(second), batcher.stats.sizes

    assert run(scenario()) == (2.0, 4.0, {1: 2})


def test_a_failing_batch_fails_its_requests_and_the_next_batch_runs():
    async def scenario():
        batcher = DynamicBatcher(Recorder(), max_batch=2, max_wait_ms=100)
        await batcher.start()
        failed = await asyncio.gather(
            batcher.submit(torch.tensor([float("nan")])), batcher.submit(torch.tensor([1.0])), return_exceptions=True
        )
        after = await batcher.submit(torch.tensor([3.0]))
        await batcher.stop()
        return failed, float(after)

    failed, after = run(scenario())
    assert all(isinstance(f, RuntimeError) and "the model failed" in str(f) for f in failed) and after == 6.0


def test_stopping_fails_the_requests_still_waiting_and_bad_settings_are_refused():
    async def scenario():
        batcher = DynamicBatcher(Recorder(), max_batch=8, max_wait_ms=10_000)
        await batcher.start()
        with batcher.incoming():  # another request is on its way: the batch would wait 10 s for it
            waiting = asyncio.ensure_future(batcher.submit(torch.tensor([1.0])))
            await asyncio.sleep(0.05)  # the request is in the batch being gathered
            await batcher.stop()
        return await asyncio.gather(waiting, return_exceptions=True)

    (result,) = run(scenario())
    assert isinstance(result, Busy) and "shutting down" in str(result)
    with pytest.raises(SSDError, match="max_batch and max_queue must be at least 1"):
        DynamicBatcher(Recorder(), max_batch=0, max_wait_ms=1)


def test_a_full_queue_a_slow_model_and_a_stopped_batcher_answer_busy():
    import threading

    release = threading.Event()

    def blocked(images):
        release.wait(timeout=30)
        return images

    async def scenario():
        batcher = DynamicBatcher(blocked, max_batch=1, max_wait_ms=0, max_queue=2, timeout_s=0.3)
        with pytest.raises(Busy, match="not running"):
            await batcher.submit(torch.zeros(1))
        await batcher.start()
        first = asyncio.ensure_future(batcher.submit(torch.zeros(1)))  # taken by the model, which blocks
        await asyncio.sleep(0.05)
        queued = [asyncio.ensure_future(batcher.submit(torch.zeros(1))) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(Busy, match="2 images are waiting"):
            await batcher.submit(torch.zeros(1))
        outcomes = await asyncio.gather(first, *queued, return_exceptions=True)
        release.set()
        await batcher.stop()
        return outcomes

    outcomes = run(scenario())
    assert all(isinstance(o, Busy) and "no result within 0.3 s" in str(o) for o in outcomes)
