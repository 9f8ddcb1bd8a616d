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

from sop_verified.core.contracts import ensure, invariant, require
from sop_verified.core.persistence import writes
from sop_verified.core.persistence.controller import PersistenceController
from sop_verified.core.persistence.writes import LinkedWrite, SubmitBatch
from sop_verified.core.request import Decision, Effect, Reason, Request, Stage
from sop_verified.tools.canonical import sha256_hex
from sop_verified.tools.group_commit import GroupCommit, Ticket
from sop_verified.tools.tlog_store import Receipt

__all__ = ["MAX_WRITES", "LinkedWrites"]

MAX_WRITES = 64
"""Most writes one leader decides and commits as one batch."""

_Answer = tuple[Decision, Receipt | None]


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

    @require(lambda data: isinstance(data, bytes | bytearray | memoryview), helper=True)
    @require(
        lambda data, digest_hex: digest_hex is None or sha256_hex(bytes(data)) == digest_hex,
        "a given digest is the data's",
        helper=True,
    )
    @ensure(
        lambda request, result: result is None or result.request_id == request.request_id,
        "the answer is the caller's own",
        helper=True,
    )
    @ensure(
        lambda result: result is None or not result.allowed or "effect" in result.extra,
        "INV-9: an ALLOW answer carries its recorded effect",
        helper=True,
    )
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
        if type(data) is not bytes:  # a digest of mutable bytes proves nothing
            data, digest_hex = bytes(data), None
        plan = writes.linked_plan(self._controller, request, data, digest_hex)
        if plan is None:
            return None
        write = (request, data, plan)
        try:
            decision, receipt = self._queue.submit(Ticket(write))
            return writes.finish_linked(self._controller, decision, receipt, write)
        except Exception as exc:  # spec: INV-2 — fail closed, never a traceback to the caller
            why = f"the linked write failed: `{type(exc).__name__}`"
            reason = Reason(Stage.INTERNAL, "internal_error", why)
            return Decision(Effect.DENY, (reason,), request.request_id)

    def _commit(self, batch: list[Ticket[_Answer]]) -> None:
        planned: list[LinkedWrite] = [t.items for t in batch]  # type: ignore[misc]
        answers = self._controller.execute_linked_batch(self._submit_batch, planned)
        for t, answer in zip(batch, answers, strict=True):
            t.result = answer


def _take(queue: list[Ticket[_Answer]]) -> int:
    return min(len(queue), MAX_WRITES)
