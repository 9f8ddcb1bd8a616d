"""Linked writes from many threads, decided and committed in batches (ADR 0008).

:class:`LinkedWrites` is what ``SOP.persist`` calls for a write that
qualifies for a linked effect. Each caller plans its own write (the scope
rules, in its own thread), queues it and sleeps on its own lock. One caller
at a time leads: it takes every queued write (up to :data:`MAX_WRITES`), has
the kernel decide each of them and waits for the batch's one durable
transaction (every ALLOW with its effect entry and its bytes; every DENY
alone), then wakes the batch's callers and hands leadership to the next
queued one. The contracts of the kernel and the controller are checked once
per batch (on every answer in it), and a caller wakes once, when its answer
is durable; it then makes its answer (the effect's details) in its own thread.

Nothing here decides: the kernel decides each request (``OpsKernel.submit_batch``,
the same stages as ``submit``); only the wait and the log append are shared.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

from sop_verified.core.contracts import ensure, invariant, require
from sop_verified.core.persistence.controller import PersistenceController
from sop_verified.core.persistence.writes import LinkedWrite, SubmitBatch
from sop_verified.core.request import Decision, Permission, Reason, Request, Stage
from sop_verified.tools.canonical import sha256_hex
from sop_verified.tools.group_commit import GroupCommit, Ticket
from sop_verified.tools.tlog_store import Receipt

__all__ = ["MAX_WRITES", "AsyncLinkedWrites", "LinkedWrites"]

MAX_WRITES = 64
"""Most writes one leader decides and commits as one batch."""

_Answer = tuple[Decision, Receipt | None]


_F = TypeVar("_F", bound=Callable[..., Any])


def _bytes_given(data: object) -> bool:
    return isinstance(data, bytes | bytearray | memoryview)


def _digest_is_the_datas(data: bytes, digest_hex: str | None) -> bool:
    return digest_hex is None or sha256_hex(bytes(data)) == digest_hex


def _callers_own_answer(request: Request, result: Decision | None) -> bool:
    return result is None or result.request_id == request.request_id


def _allow_carries_effect(result: Decision | None) -> bool:
    return result is None or not result.allowed or result.write is not None


def _persist_contracts(fn: _F) -> _F:
    """The contracts of both ``persist`` methods (the blocking one and the coroutine).

    Named conditions, not lambdas: icontract reads a lambda's text from its
    decorator line to explain a violation, and these are applied here.
    """
    for contract in (
        ensure(
            _allow_carries_effect, "INV-9: an ALLOW answer carries its recorded effect", helper=True
        ),
        ensure(_callers_own_answer, "the answer is the caller's own", helper=True),
        require(_digest_is_the_datas, "a given digest is the data's", helper=True),
        require(_bytes_given, "bytes to write", helper=True),
    ):
        fn = contract(fn)
    return fn


@invariant(
    lambda self: self._controller is not None and self._submit_batch is not None, helper=True
)
class LinkedWrites:
    """Batches linked writes from concurrent callers through the kernel and the controller."""

    def __init__(self, controller: PersistenceController, submit_batch: SubmitBatch) -> None:
        """Wire the batcher.

        Args:
            controller: the persistence controller (plans, stores, answers).
            submit_batch: the kernel's ``submit_batch``.
        """
        self._controller = controller
        self._submit_batch = submit_batch
        self._queue: GroupCommit[_Answer] = GroupCommit(self._commit, _take)

    @_persist_contracts
    def persist(
        self, request: Request, data: bytes, digest_hex: str | None = None
    ) -> Decision | None:
        """Decide and store one small content-addressed write with the batch it joins.

        Args:
            request: the parsed persist request (content bound).
            data: the bytes.
            digest_hex: the hex SHA-256 of ``data`` if the caller computed it
                (of these very bytes: ``data`` must be immutable ``bytes``).

        Returns:
            None, having recorded nothing, when the write does not qualify
            (use the two-step path); otherwise the decision as
            ``PersistenceController.execute`` answers it. Never raises for bad
            input or internal failures: a batch that failed outside the kernel
            answers DENY (``internal_error``), and whatever of it the log
            recorded stays recorded.
        """
        write = _planned(self._controller, request, data, digest_hex)
        if write is None:
            return None
        try:
            decision, receipt = self._queue.submit(Ticket(write))
            return self._controller.finish_linked(decision, receipt, write)
        except Exception as exc:  # spec: INV-2 — fail closed, never a traceback to the caller
            return _failed(request, exc)

    def _commit(self, batch: list[Ticket[_Answer]]) -> None:
        planned: list[LinkedWrite] = [t.items for t in batch]  # type: ignore[misc]
        answers = self._controller.execute_linked_batch(self._submit_batch, planned)
        for t, answer in zip(batch, answers, strict=True):
            t.result = answer


class _LoopQueue:
    """The writes one event loop has queued, and the task that commits them (if running)."""

    __slots__ = ("drainer", "items")

    def __init__(self) -> None:
        self.items: list[tuple[LinkedWrite, asyncio.Future[_Answer]]] = []
        self.drainer: asyncio.Task[None] | None = None


@invariant(lambda self: self._controller is not None and self._executor is not None, helper=True)
class AsyncLinkedWrites:
    """Linked writes from coroutines, decided and committed in batches off the event loop.

    The asyncio counterpart of :class:`LinkedWrites` (ADR 0010). A coroutine
    plans its write on the loop, queues it and awaits a future; one drain task
    per loop hands every queued write (up to :data:`MAX_WRITES`) to the
    controller's batch in ``executor``, a single worker thread, so the loop
    never waits on the decision or the fsync and batches never overlap. The
    callers' answers are made on the loop once the batch is durable.
    """

    def __init__(
        self, controller: PersistenceController, submit_batch: SubmitBatch, executor: Executor
    ) -> None:
        """Wire the batcher.

        Args:
            controller: the persistence controller (plans, stores, answers).
            submit_batch: the kernel's ``submit_batch``.
            executor: where batches run; one worker, so they run one at a time.
        """
        self._controller = controller
        self._submit_batch = submit_batch
        self._executor = executor
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopQueue] = (
            weakref.WeakKeyDictionary()
        )
        self._loops_lock = threading.Lock()

    @_persist_contracts
    async def persist(
        self, request: Request, data: bytes, digest_hex: str | None = None
    ) -> Decision | None:
        """:meth:`LinkedWrites.persist` for a coroutine (the same arguments).

        Returns:
            None, having recorded nothing, when the write does not qualify;
            otherwise the decision as :meth:`LinkedWrites.persist` answers it.
            Never raises for bad input or internal failures (a cancelled
            caller is cancelled: a write already handed to its batch may
            still be recorded, as for a caller that went away).
        """
        write = _planned(self._controller, request, data, digest_hex)
        if write is None:
            return None
        loop = asyncio.get_running_loop()
        queue = self._loops.get(loop)
        if queue is None:
            with self._loops_lock:  # loops in other threads may be adding theirs
                queue = self._loops.setdefault(loop, _LoopQueue())
        answer: asyncio.Future[_Answer] = loop.create_future()
        queue.items.append((write, answer))
        if queue.drainer is None:
            queue.drainer = loop.create_task(self._drain(queue))
        try:
            decision, receipt = await answer
            return self._controller.finish_linked(decision, receipt, write)
        except Exception as exc:  # spec: INV-2 — fail closed, never a traceback to the caller
            return _failed(request, exc)

    async def _drain(self, queue: _LoopQueue) -> None:
        """Commit the queued writes batch by batch until none is left."""
        loop = asyncio.get_running_loop()
        taken: list[tuple[LinkedWrite, asyncio.Future[_Answer]]] = []
        try:
            while queue.items:
                taken = [(w, f) for w, f in queue.items[:MAX_WRITES] if not f.done()]
                del queue.items[:MAX_WRITES]  # a caller cancelled before its batch is not written
                if not taken:
                    continue
                planned = [w for w, _ in taken]
                try:
                    answers = await loop.run_in_executor(
                        self._executor,
                        self._controller.execute_linked_batch,
                        self._submit_batch,
                        planned,
                    )
                except Exception as exc:  # every caller of the batch answers DENY (persist)
                    for _, f in taken:
                        if not f.done():
                            f.set_exception(exc)
                    continue
                for (_, f), got in zip(taken, answers, strict=True):
                    if not f.done():
                        f.set_result(got)
                taken = []
        finally:
            queue.drainer = None
            for _, f in [*taken, *queue.items]:  # the loop is going away: nobody is left waiting
                f.cancel()
            queue.items.clear()


def _planned(
    controller: PersistenceController, request: Request, data: bytes, digest_hex: str | None
) -> LinkedWrite | None:
    """The write as a batch takes it, or None when it does not qualify for a linked effect."""
    if type(data) is not bytes:  # a digest of mutable bytes proves nothing
        data, digest_hex = bytes(data), None
    plan = controller.linked_plan(request, data, digest_hex)
    return None if plan is None else (request, data, plan)


def _failed(request: Request, exc: BaseException) -> Decision:
    why = f"the linked write failed: `{type(exc).__name__}`"
    return Decision(
        Permission.DENY, (Reason(Stage.INTERNAL, "internal_error", why),), request.request_id
    )


def _take(queue: list[Ticket[_Answer]]) -> int:
    return min(len(queue), MAX_WRITES)
