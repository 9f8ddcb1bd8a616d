"""The decision queue: requests from the event loop, decided in batches by one thread.

The HTTP handlers run on an asyncio loop; a decision needs the kernel and a
durable log append, which block. Handlers queue their parsed request and await
its future; a deciding thread takes what is queued (up to :data:`BATCH_MAX` at
a time), decides it with :meth:`~sop_verified.nexus.sop.SOP.submit_batch`, in
one durable log batch, and hands each answer back to its loop. While a batch
commits the next one gathers and is decided by the other thread: the group
commit of ADR 0008, fed from the loop.

Back-pressure, never loss: when :data:`capacity` requests wait, :meth:`decide`
raises :class:`QueueFullError` at once (the bridge answers 429 with
``Retry-After``); a request that was queued is always decided and logged, even
when its client has gone. :meth:`close` stops taking requests and decides
everything already queued before it returns.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from sop_verified.core.request import Decision, Permission, Reason, Request, Stage
from sop_verified.errors import SOPError

__all__ = ["BATCH_MAX", "DECIDING_THREADS", "DecisionQueue", "QueueClosedError", "QueueFullError"]

BATCH_MAX = 128
"""At most this many requests are decided in one log batch."""

DECIDING_THREADS = 2
"""Threads taking batches from the queue (see :class:`DecisionQueue`)."""

_Item = tuple[Request, "asyncio.Future[Decision]", asyncio.AbstractEventLoop, float]

BatchObserver = Callable[[int, list[float], float], None]
"""Told each batch's size, its requests' seconds in the queue, and the batch's seconds."""


class QueueFullError(SOPError):
    """Too many requests wait for a decision: try again later (HTTP 429)."""


class QueueClosedError(SOPError):
    """The server is stopping and takes no new requests (HTTP 503)."""


class DecisionQueue:
    """Decides queued requests in batches on one thread (see the module docstring)."""

    def __init__(
        self,
        decide_batch: Callable[[Sequence[Request]], list[Decision]],
        *,
        capacity: int = 4096,
        on_batch: BatchObserver | None = None,
        threads: int = DECIDING_THREADS,
    ) -> None:
        """Start the deciding threads.

        Args:
            decide_batch: decides requests in one log batch, one answer each, never raises
                (``SOP.submit_batch``); safe to call from several threads.
            capacity: how many requests may wait before :meth:`decide` refuses.
            on_batch: told each batch's size, queue waits and duration (metrics).
            threads: deciding threads: while one waits on its batch's fsync, the next
                decides its own batch, which the log's group commit then takes.
        """
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got `{capacity}`")
        self._decide = decide_batch
        self._capacity = capacity
        self._on_batch = on_batch
        self._pending: collections.deque[_Item] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._run, name=f"sop-decisions-{i}", daemon=True)
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def depth(self) -> int:
        """How many requests wait now."""
        return len(self._pending)

    @property
    def capacity(self) -> int:
        """How many requests may wait."""
        return self._capacity

    async def decide(self, request: Request) -> Decision:
        """Queue ``request`` and wait for its logged decision.

        Raises:
            QueueFullError: the queue is full (nothing was queued or logged).
            QueueClosedError: the server is stopping (nothing was queued or logged).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Decision] = loop.create_future()
        with self._cond:
            if self._closed:
                raise QueueClosedError("the server is stopping and takes no new requests")
            if len(self._pending) >= self._capacity:
                raise QueueFullError(
                    f"{len(self._pending)} requests wait for a decision, the queue's capacity"
                )
            self._pending.append((request, future, loop, time.perf_counter()))
            self._cond.notify()
        # A client that goes away cancels this future only: its request stays queued and is
        # decided and logged anyway (the deciding thread skips a future that is done).
        return await future

    def close(self, timeout: float | None = None) -> None:
        """Take no new requests, decide every queued one, stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)

    def _take(self) -> list[_Item] | None:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if not self._pending:
                return None  # closed and drained
            n = min(len(self._pending), BATCH_MAX)
            return [self._pending.popleft() for _ in range(n)]

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            started = time.perf_counter()
            decisions = self._decided([item[0] for item in batch])
            if self._on_batch is not None:
                waits = [started - item[3] for item in batch]
                self._on_batch(len(batch), waits, time.perf_counter() - started)
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, Decision]]] = {}
            for (_, future, loop, _queued), decision in zip(batch, decisions, strict=True):
                by_loop.setdefault(loop, []).append((future, decision))
            for loop, answers in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_resolve, answers)
                except RuntimeError:  # the loop is closed: nobody waits any more
                    continue

    def _decided(self, requests: list[Request]) -> list[Decision]:
        try:
            decisions = self._decide(requests)
            if len(decisions) != len(requests):
                raise RuntimeError(f"{len(decisions)} answers for {len(requests)} requests")
            return decisions
        except Exception as exc:  # spec: INV-2 — never an unanswered request, never an ALLOW
            why = Reason(
                Stage.INTERNAL, "internal_error", f"the batch failed: `{type(exc).__name__}`"
            )
            return [Decision(Permission.DENY, (why,), r.request_id) for r in requests]


def _resolve(answers: list[tuple[asyncio.Future[Decision], Decision]]) -> None:
    for future, decision in answers:
        if not future.done():
            future.set_result(decision)
