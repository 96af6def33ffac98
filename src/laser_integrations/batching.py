"""One micro-batching engine for every adapter: concurrent callers share forward passes.

Async callers submit a request (a key, a list of items and, optionally, their own limits) and await a
future. One worker thread per engine collects pending requests, runs the items of one key in one call of
``run_batch`` off the event loop, and resolves every caller's future with its own slice of the results.
Requests with different keys (say, queries embedded with another K or instruction) never share a call.

Limits travel with each request and never change the engine: ``submit(key, items, max_batch_size=...,
max_wait=...)``, ``None`` meaning the engine's own (set at construction, read-only after). The rule for
requests that share a key: they run together once they hold the **oldest** one's ``max_batch_size``
items, or once any of them has waited its own ``max_wait`` since it was submitted; a run takes them in
submission order up to the oldest one's ``max_batch_size`` items (a request is never split). So a request
is never held past its own ``max_wait`` by someone else's longer window.

Sync callers run their request at once in their own thread. Both paths hold the same lock around
``run_batch``, so a model never sees two forward passes at a time, whichever thread calls.

>>> def lengths(key, texts):
...     return [len(text) for text in texts]
>>> batcher = MicroBatcher(lengths, max_batch_size=8)
>>> batcher.run("side", ["a", "bcd"])
[1, 3]
>>> import asyncio
>>> async def many():
...     return await asyncio.gather(*(batcher.arun("side", ["x" * n], max_wait=0.01) for n in range(5)))
>>> asyncio.run(many())
[[0], [1], [2], [3], [4]]
>>> batcher.max_wait  # the per-call limits left the engine's own as they were
0.002
>>> batcher.close()
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from laser_integrations.validation import non_negative_number, positive_int

Item = TypeVar("Item")
Result = TypeVar("Result")

RunBatch = Callable[[Any, list[Item]], Sequence[Result]]
"""``run_batch(key, items) -> results``, one result per item, in order."""


@dataclass(eq=False)
class _Request(Generic[Item, Result]):
    key: Hashable
    items: list[Item]
    max_batch_size: int
    deadline: float
    """``time.monotonic()`` at submission plus the request's ``max_wait``."""
    future: Future[list[Result]] = field(default_factory=Future)


class MicroBatcher(Generic[Item, Result]):
    """Coalesce concurrent requests into shared calls of ``run_batch``, run by one worker thread.

    Args:
        run_batch: ``run_batch(key, items)`` returns one result per item. It receives all the items of
            the coalesced requests that share ``key``, in submission order.
        max_batch_size: The default for requests that set none: stop collecting once this many items of
            one key wait (a request is never split; a larger one runs alone and ``run_batch`` chunks it).
        max_wait: The default for requests that set none: seconds a request may wait for others to join
            it (0: take what is queued).
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
        self._max_batch_size = positive_int("max_batch_size", max_batch_size)
        self._max_wait = non_negative_number("max_wait", max_wait, " of seconds")
        if non_negative_number("idle_timeout", idle_timeout, " of seconds") == 0:
            raise ValueError("idle_timeout must be > 0")
        self._idle_timeout = idle_timeout
        self._run_batch = run_batch
        self._name = name
        self._lock: AbstractContextManager[Any] = lock if lock is not None else threading.Lock()
        self.batches_run = 0
        """Calls of ``run_batch`` made by the worker (a coalesced batch counts once)."""
        self._reset_queue()

    def _reset_queue(self) -> None:
        self._pid = os.getpid()
        self._ready = threading.Condition(threading.Lock())
        self._pending: deque[_Request[Item, Result]] = deque()
        self._worker: threading.Thread | None = None
        self._closing = False

    # -- settings, fixed at construction -------------------------------------------------------------

    @property
    def max_batch_size(self) -> int:
        """Items per run for requests that set no ``max_batch_size``."""
        return self._max_batch_size

    @property
    def max_wait(self) -> float:
        """Seconds of collection for requests that set no ``max_wait``."""
        return self._max_wait

    @property
    def idle_timeout(self) -> float:
        """Seconds the worker thread waits for work before it exits."""
        return self._idle_timeout

    @property
    def name(self) -> str:
        """The worker thread's name."""
        return self._name

    @property
    def lock(self) -> AbstractContextManager[Any]:
        """The lock held around every ``run_batch`` call."""
        return self._lock

    # -- callers ---------------------------------------------------------------------------------------

    def run(self, key: Hashable, items: Sequence[Item]) -> list[Result]:
        """Run ``items`` now in the calling thread (serialized with the worker by :attr:`lock`)."""
        items = list(items)
        if not items:
            return []
        with self.lock:
            return self._checked_results(key, items)

    async def arun(
        self,
        key: Hashable,
        items: Sequence[Item],
        *,
        max_batch_size: int | None = None,
        max_wait: float | None = None,
    ) -> list[Result]:
        """Queue ``items`` for the worker and wait without blocking the event loop (limits as :meth:`submit`)."""
        return await asyncio.wrap_future(self.submit(key, items, max_batch_size=max_batch_size, max_wait=max_wait))

    def submit(
        self,
        key: Hashable,
        items: Sequence[Item],
        *,
        max_batch_size: int | None = None,
        max_wait: float | None = None,
    ) -> Future[list[Result]]:
        """Queue ``items`` under ``key``; the returned future gets their results (or the error).

        ``max_batch_size`` and ``max_wait`` are this request's limits (``None``: the engine's own); how they
        combine with other pending requests' is the rule in the module docstring. Bad limits raise
        ``ValueError`` here, before anything is queued.
        """
        size = self._max_batch_size if max_batch_size is None else positive_int("max_batch_size", max_batch_size)
        wait = self._max_wait if max_wait is None else non_negative_number("max_wait", max_wait, " of seconds")
        request: _Request[Item, Result] = _Request(key, list(items), size, time.monotonic() + wait)
        if not request.items:
            request.future.set_result([])
            return request.future
        if self._pid != os.getpid():  # forked: the parent's worker thread does not exist here
            self._reset_queue()
        with self._ready:
            self._pending.append(request)
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
                self._run_group(requests[0].key, requests)
        finally:
            self._fail_pending_if_dead()

    def _next_requests(self) -> list[_Request[Item, Result]] | None:
        """Wait for work, then until one key's requests are due (the module docstring's rule), and take them."""
        with self._ready:
            while True:
                if not self._pending:
                    if self._closing or not self._ready.wait(self._idle_timeout):
                        if not self._pending:
                            self._worker = None
                            return None
                    continue
                now = time.monotonic()
                taken, next_deadline = self._take_due(now)
                if taken:
                    return taken
                self._ready.wait(next_deadline - now)

    def _take_due(self, now: float) -> tuple[list[_Request[Item, Result]], float]:
        """The first key (by its oldest request) whose requests are due, taken off the queue; else ``[]`` and
        the earliest deadline. Called with ``_ready`` held."""
        groups: dict[Hashable, list[_Request[Item, Result]]] = {}
        for request in self._pending:
            groups.setdefault(request.key, []).append(request)
        next_deadline = math.inf
        for group in groups.values():
            limit = group[0].max_batch_size
            deadline = min(request.deadline for request in group)
            if self._closing or deadline <= now or sum(len(request.items) for request in group) >= limit:
                taken, size = [], 0
                for request in group:
                    if taken and size + len(request.items) > limit:
                        break
                    taken.append(request)
                    size += len(request.items)
                chosen = set(map(id, taken))
                self._pending = deque(request for request in self._pending if id(request) not in chosen)
                return taken, next_deadline
            next_deadline = min(next_deadline, deadline)
        return [], next_deadline

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
        for request in stranded:
            if request.future.set_running_or_notify_cancel():
                request.future.set_exception(RuntimeError("the micro-batcher worker stopped unexpectedly"))
