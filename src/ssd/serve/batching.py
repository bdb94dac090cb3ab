"""Dynamic batching: images that arrive together run through the model as one batch, in a worker thread, so that
the event loop keeps answering (health checks, uploads) while the model computes."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from ..errors import SSDError


class Busy(SSDError):
    """The batcher cannot take or finish a request now (full queue, timeout, shutting down): HTTP 503."""


@dataclass
class _Pending:
    image: Tensor
    future: asyncio.Future
    arrived: float  # event-loop time


@dataclass
class BatchStats:
    """What the batcher has run: requests, batches, and how many batches had each size."""

    requests: int = 0
    batches: int = 0
    sizes: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "batches": self.batches,
            "batch_sizes": {str(size): count for size, count in sorted(self.sizes.items())},
        }


class DynamicBatcher:
    """Runs ``run_batch(images) -> results`` on batches of up to ``max_batch`` submitted images. A batch leaves when
    it is full, when no other request is on its way (see ``incoming``), or ``max_wait_ms`` after its first image
    arrived: a lone client never waits. ``start`` and ``stop`` on the serving event loop."""

    def __init__(
        self,
        run_batch: Callable[[list[Tensor]], list[Any]],
        max_batch: int,
        max_wait_ms: float,
        max_queue: int = 256,
        timeout_s: float = 120.0,
    ) -> None:
        if max_batch < 1 or max_wait_ms < 0 or max_queue < 1 or timeout_s <= 0:
            raise SSDError(
                f"max_batch and max_queue must be at least 1, max_wait_ms at least 0 and timeout_s positive, got "
                f"{max_batch}, {max_queue}, {max_wait_ms}, {timeout_s}"
            )
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Pending] | None = None
        self._current: list[_Pending] = []  # the batch being gathered or run
        self._incoming = 0  # requests uploading or decoding, which will submit an image soon
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ssd-batch")
        self._task = asyncio.create_task(self._serve_batches())

    async def stop(self) -> None:
        """Stop taking batches; the requests still waiting, queued or in the batch at hand, get an error."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        waiting = list(self._current)
        while self._queue is not None and not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        for pending in waiting:
            if not pending.future.done():
                pending.future.set_exception(Busy("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    @contextmanager
    def incoming(self) -> Iterator[None]:
        """Count a request as on its way for the block (while it uploads and decodes its image), so that the
        batch being gathered waits for it."""
        self._incoming += 1
        try:
            yield
        finally:
            self._incoming -= 1

    async def submit(self, image: Tensor) -> Any:
        """The result for one image, once its batch has run. ``Busy`` when ``max_queue`` images already wait,
        when the result takes longer than ``timeout_s``, or when the batcher is not running."""
        if self._task is None or self._task.done():
            raise Busy("the model is not running (the server is starting or stopping)")
        if self._queue.qsize() >= self.max_queue:
            raise Busy(f"{self._queue.qsize()} images are waiting for the model already: try again later")
        loop = asyncio.get_running_loop()
        pending = _Pending(image, loop.create_future(), loop.time())
        self._queue.put_nowait(pending)
        try:
            return await asyncio.wait_for(pending.future, self.timeout_s)
        except asyncio.TimeoutError:
            raise Busy(f"no result within {self.timeout_s:g} s: the server is overloaded") from None

    async def _serve_batches(self) -> None:
        while True:
            batch = await self._next_batch()
            await self._run(batch)

    async def _next_batch(self) -> list[_Pending]:
        """The first waiting image and those that join it before its wait is over, the batch is full or no other
        request is on its way."""
        queue, loop = self._queue, asyncio.get_running_loop()
        batch = self._current = [await queue.get()]
        deadline = batch[0].arrived + self.max_wait_s
        while len(batch) < self.max_batch:
            if not queue.empty():
                batch.append(queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0 or self._incoming == 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return batch

    async def _run(self, batch: list[_Pending]) -> None:
        live = [p for p in batch if not p.future.done()]  # a client that left has its future cancelled
        if not live:
            return
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self._executor, self.run_batch, [p.image for p in live]
            )
        except Exception as exc:  # the model failed: every request of the batch hears of it
            for p in live:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        self.stats.requests += len(live)
        self.stats.batches += 1
        self.stats.sizes[len(live)] += 1
        for p, result in zip(live, results):
            if not p.future.done():
                p.future.set_result(result)
