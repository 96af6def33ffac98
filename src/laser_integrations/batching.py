"""One micro-batching engine for every adapter: concurrent callers share forward passes.

Async callers submit a request (a key and a list of items) and await a future. One worker thread
per engine collects the pending requests for up to ``max_wait`` seconds or until ``max_batch_size``
items wait, runs the items of each key in one call of ``run_batch`` off the event loop, and
resolves every caller's future with its own slice of the results. Requests with different keys
(say, queries embedded with another K or instruction) never share a call.

Sync callers run their request at once in their own thread. Both paths hold the same lock around
``run_batch``, so a model never sees two forward passes at a time, whichever thread calls.

>>> def lengths(key, texts):
...     return [len(text) for text in texts]
>>> batcher = MicroBatcher(lengths, max_batch_size=8)
>>> batcher.run("side", ["a", "bcd"])
[1, 3]
>>> import asyncio
>>> async def many():
...     return await asyncio.gather(*(batcher.arun("side", ["x" * n]) for n in range(5)))
>>> asyncio.run(many())
[[0], [1], [2], [3], [4]]
>>> batcher.close()
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

RunBatch = Callable[[Any, list[Item]], Sequence[Result]]
"""``run_batch(key, items) -> results``, one result per item, in order."""


@dataclass(eq=False)
class _Request(Generic[Item, Result]):
    key: Hashable
    items: list[Item]
    future: Future[list[Result]] = field(default_factory=Future)


class MicroBatcher(Generic[Item, Result]):
    """Coalesce concurrent requests into shared calls of ``run_batch``, run by one worker thread.

    Args:
        run_batch: ``run_batch(key, items)`` returns one result per item. It receives all the items of
            the coalesced requests that share ``key``, in submission order.
        max_batch_size: Stop collecting once this many items wait (a request is never split; a larger
            one runs alone and ``run_batch`` chunks it).
        max_wait: Seconds to keep collecting after the first request arrives (0: take what is queued).
        lock: The lock held around every ``run_batch`` call, sync and async. Pass one lock to every
            engine that drives the same model (default: a lock of this engine's own).
        idle_timeout: Seconds the worker thread waits for work before it exits; the next request
            starts a new one, so an unused engine holds no thread.

    Example:
        >>> batcher = MicroBatcher(lambda key, items: [item * 2 for item in items])
        >>> batcher.run("double", [1, 2])
        [2, 4]
    """

    def __init__(
        self,
        run_batch: RunBatch[Item, Result],
        *,
        max_batch_size: int = 32,
        max_wait: float = 0.002,
        lock: AbstractContextManager[Any] | None = None,
        idle_timeout: float = 10.0,
        name: str = "laser-micro-batcher",
    ) -> None:
        if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) or max_batch_size < 1:
            raise ValueError(f"max_batch_size must be a positive integer, got {max_batch_size!r}")
        if max_wait < 0 or idle_timeout <= 0:
            raise ValueError("max_wait must be >= 0 and idle_timeout > 0")
        self._run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait
        self.idle_timeout = idle_timeout
        self.name = name
        self.lock: AbstractContextManager[Any] = lock if lock is not None else threading.Lock()
        self.batches_run = 0
        """Calls of ``run_batch`` made by the worker (a coalesced batch counts once)."""
        self._reset_queue()

    def _reset_queue(self) -> None:
        self._pid = os.getpid()
        self._ready = threading.Condition(threading.Lock())
        self._pending: deque[_Request[Item, Result]] = deque()
        self._pending_items = 0
        self._worker: threading.Thread | None = None
        self._closing = False

    # -- callers ---------------------------------------------------------------------------------------

    def run(self, key: Hashable, items: Sequence[Item]) -> list[Result]:
        """Run ``items`` now in the calling thread (serialized with the worker by :attr:`lock`)."""
        items = list(items)
        if not items:
            return []
        with self.lock:
            return self._checked_results(key, items)

    async def arun(self, key: Hashable, items: Sequence[Item]) -> list[Result]:
        """Queue ``items`` for the worker and wait without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(key, items))

    def submit(self, key: Hashable, items: Sequence[Item]) -> Future[list[Result]]:
        """Queue ``items`` under ``key``; the returned future gets their results (or the error)."""
        request: _Request[Item, Result] = _Request(key, list(items))
        if not request.items:
            request.future.set_result([])
            return request.future
        if self._pid != os.getpid():  # forked: the parent's worker thread does not exist here
            self._reset_queue()
        with self._ready:
            self._pending.append(request)
            self._pending_items += len(request.items)
            if self._worker is None:
                self._closing = False
                self._worker = threading.Thread(target=self._serve, name=self.name, daemon=True)
                self._worker.start()
            self._ready.notify()
        return request.future

    def close(self, timeout: float | None = None) -> None:
        """Finish the queued requests and stop the worker thread (a later request starts a new one)."""
        with self._ready:
            worker = self._worker
            self._closing = True
            self._ready.notify()
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout)

    @property
    def worker_alive(self) -> bool:
        """Whether a worker thread is running now."""
        worker = self._worker
        return worker is not None and worker.is_alive()

    # -- worker ----------------------------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            while (requests := self._next_requests()) is not None:
                for key, group in _grouped_by_key(requests):
                    self._run_group(key, group)
        finally:
            self._fail_pending_if_dead()

    def _next_requests(self) -> list[_Request[Item, Result]] | None:
        """Wait for work, collect for up to ``max_wait``, and take up to ``max_batch_size`` items."""
        with self._ready:
            while not self._pending:
                if self._closing or not self._ready.wait(self.idle_timeout):
                    if not self._pending:
                        self._worker = None
                        return None
            deadline = time.monotonic() + self.max_wait
            while self._pending_items < self.max_batch_size and not self._closing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._ready.wait(remaining)
            taken: list[_Request[Item, Result]] = []
            size = 0
            while self._pending and (not taken or size + len(self._pending[0].items) <= self.max_batch_size):
                request = self._pending.popleft()
                taken.append(request)
                size += len(request.items)
            self._pending_items -= size
            return taken

    def _run_group(self, key: Hashable, requests: list[_Request[Item, Result]]) -> None:
        live = [request for request in requests if request.future.set_running_or_notify_cancel()]
        if not live:
            return
        items = [item for request in live for item in request.items]
        try:
            with self.lock:
                results = self._checked_results(key, items)
                self.batches_run += 1
        except Exception as error:
            if len(live) == 1:
                live[0].future.set_exception(error)
                return
            # One bad request must not fail its neighbours: run each alone so the error reaches its owner.
            for request in live:
                self._run_alone(key, request)
            return
        offset = 0
        for request in live:
            request.future.set_result(results[offset : offset + len(request.items)])
            offset += len(request.items)

    def _run_alone(self, key: Hashable, request: _Request[Item, Result]) -> None:
        try:
            with self.lock:
                results = self._checked_results(key, request.items)
                self.batches_run += 1
        except Exception as error:
            request.future.set_exception(error)
        else:
            request.future.set_result(results)

    def _checked_results(self, key: Hashable, items: list[Item]) -> list[Result]:
        results = list(self._run_batch(key, items))
        if len(results) != len(items):
            raise RuntimeError(f"run_batch returned {len(results)} results for {len(items)} items")
        return results

    def _fail_pending_if_dead(self) -> None:
        """If the worker dies on something unexpected, fail the waiting callers rather than hang them."""
        with self._ready:
            if self._worker is not threading.current_thread():
                return
            self._worker = None
            stranded = list(self._pending)
            self._pending.clear()
            self._pending_items = 0
        for request in stranded:
            if request.future.set_running_or_notify_cancel():
                request.future.set_exception(RuntimeError("the micro-batcher worker stopped unexpectedly"))


def _grouped_by_key(requests: list[_Request[Item, Result]]) -> list[tuple[Hashable, list[_Request[Item, Result]]]]:
    groups: dict[Hashable, list[_Request[Item, Result]]] = {}
    for request in requests:
        groups.setdefault(request.key, []).append(request)
    return list(groups.items())
