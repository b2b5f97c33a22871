"""Dynamic batching: requests that arrive while the workers are busy share one runtime call.

A batch starts when a worker is free; it takes every request already waiting (up to
`max_rows` rows) and waits at most `delay_s` for more. Under light load a request goes
alone after `delay_s`; under heavy load batches form without any wait. Only artifacts
with a dynamic batch dimension can batch (NPU recipes fix it to 1).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np


@dataclass
class _Pending:
    feeds: dict[str, np.ndarray]
    rows: int
    future: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Batcher:
    def __init__(self, run, *, max_rows: int, delay_s: float, concurrency: int, on_batch=None):
        self.run, self.max_rows, self.delay_s = run, max_rows, delay_s
        self.on_batch = on_batch  # called with the row count of each runtime call (a metric)
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._slots = asyncio.Semaphore(concurrency)  # one batch per worker at a time
        self._carry: _Pending | None = None
        self._task = asyncio.get_running_loop().create_task(self._collect())

    async def submit(self, feeds: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        pending = _Pending(feeds, rows)
        self._queue.put_nowait(pending)
        return await pending.future

    async def _next(self, timeout: float | None) -> _Pending | None:
        if self._carry is not None:
            item, self._carry = self._carry, None
            return item
        if timeout is None:
            return await self._queue.get()
        try:
            return await asyncio.wait_for(self._queue.get(), timeout) if timeout > 0 else self._queue.get_nowait()
        except (TimeoutError, asyncio.QueueEmpty):
            return None

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._slots.acquire()
            first = await self._next(None)
            batch, rows = [first], first.rows
            deadline = loop.time() + self.delay_s
            while rows < self.max_rows:
                item = await self._next(deadline - loop.time())
                if item is None:
                    break
                if rows + item.rows > self.max_rows:
                    self._carry = item  # starts the next batch
                    break
                batch.append(item)
                rows += item.rows
            loop.create_task(self._dispatch(batch, rows))

    async def _dispatch(self, batch: list[_Pending], rows: int) -> None:
        try:
            if self.on_batch:
                self.on_batch(rows)
            if len(batch) == 1:
                outputs = await self.run(batch[0].feeds)
                _settle(batch[0].future, outputs)
                return
            names = list(batch[0].feeds)
            feeds = {name: np.concatenate([p.feeds[name] for p in batch]) for name in names}
            outputs = await self.run(feeds)
            start = 0
            for pending in batch:
                _settle(pending.future, {k: v[start : start + pending.rows] for k, v in outputs.items()})
                start += pending.rows
        except Exception as exc:  # the runtime's failure is every batched request's failure
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
        finally:
            self._slots.release()

    async def close(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


def _settle(future: asyncio.Future, value) -> None:
    if not future.done():  # the client may have gone away
        future.set_result(value)
