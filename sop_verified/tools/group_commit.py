"""Group commit: concurrent callers share one durable write, each acknowledged after it.

Callers queue a :class:`Ticket`; one of them at a time becomes the leader,
takes queued tickets in order (``take`` decides how many) and runs the
``commit`` callback on them while the others wait. ``commit`` must fill in
each ticket's result or raise; a raised exception becomes every ticket's
error. A caller returns only when its own ticket was committed, so nothing is
acknowledged before it is durable.

How waiting works: each ticket carries its own wake-up lock, held from its
creation, and its caller sleeps on that lock alone. After a batch the leader
releases the lock of each ticket in it, so a batch wakes only its own callers.
A leader commits one batch, which holds its own ticket (it leads only once
its ticket is at the front of the queue), then hands leadership to the owner
of the ticket now at the front (marking it as the leader, then waking it
alone) before it wakes the batch, or, with an empty queue, steps down; the
next caller to arrive then leads. So whenever the queue is non-empty exactly
one thread leads or has been told to lead, and no queued ticket waits forever.

If ``commit`` raises an exception that is not an :class:`Exception` (say
:class:`KeyboardInterrupt`), its batch's tickets get it as their error, the
leader hands leadership on and the exception propagates in the leader. A
caller whose wait is interrupted, or whose ``take`` raised, withdraws its
ticket if it is still queued (it is then never committed) and passes on any
leadership it held.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["GroupCommit", "Ticket"]

_R = TypeVar("_R")


class Ticket(Generic[_R]):
    """Work one caller waits on; the leader sets ``result`` or ``error``."""

    __slots__ = ("_wake", "done", "error", "items", "result", "tag")

    def __init__(self, items: Sequence[Any], tag: Any = None) -> None:
        """Queue ``items`` (with an optional ``tag`` that ``take`` may read)."""
        self.items = items
        self.tag = tag
        self.result: _R | None = None
        self.error: BaseException | None = None
        self.done = False
        # Held until the caller should wake: its batch is done or it must lead.
        # A plain Lock is the cheapest primitive a thread can sleep on.
        self._wake = threading.Lock()
        self._wake.acquire()

    def sleep(self) -> None:
        """Block the caller until :meth:`wake`: its batch is done or it must lead."""
        self._wake.acquire()

    def wake(self) -> None:
        """Wake the caller sleeping on this ticket (once per :meth:`sleep`)."""
        self._wake.release()


Take = Callable[[list[Ticket[Any]]], int]
"""Given the queue (non-empty), how many tickets from its front go into the next batch (>= 1)."""


class GroupCommit(Generic[_R]):
    """A leader/follower queue around a ``commit(tickets)`` callback."""

    def __init__(self, commit: Callable[[list[Ticket[_R]]], None], take: Take) -> None:
        """Make a queue.

        Args:
            commit: Writes a batch durably and sets each ticket's ``result``;
                raises on failure. Only ever runs in one thread at a time.
            take: Picks the batch size from the front of the queue.
        """
        self._commit = commit
        self._take = take
        self._mutex = threading.Lock()  # guards _queue and _leader
        self._queue: list[Ticket[_R]] = []
        # The ticket whose caller leads (or has been woken to lead); None when
        # nobody does, which happens only while the queue is empty.
        self._leader: Ticket[_R] | None = None

    def submit(self, ticket: Ticket[_R]) -> _R:
        """Queue ``ticket`` and return its result once its batch committed.

        Args:
            ticket: The work; a fresh ticket, not one submitted before.

        Returns:
            The result ``commit`` set.

        Raises:
            ValueError: ``ticket`` was already submitted and is done.
            BaseException: whatever ``commit`` raised for the ticket's batch.
        """
        if ticket.done:
            raise ValueError("ticket was already submitted")
        with self._mutex:
            self._queue.append(ticket)
            follower = self._leader is not None
            if not follower:
                self._leader = ticket
        if follower:
            try:
                ticket.sleep()  # until our batch is done or we are told to lead
            except BaseException:
                self._withdraw(ticket)
                raise
        if not ticket.done:
            try:
                self._lead(ticket)
            except BaseException:
                self._withdraw(ticket)
                raise
        return _outcome(ticket)

    def take_more(self, batch: list[Ticket[_R]]) -> int:
        """Move the tickets queued since ``batch`` was taken into it; return how many.

        For ``commit``, in the leader's thread, while it commits ``batch`` (the
        list it was given): what arrived while the write waited (for a lock
        another process holds) goes into the same write instead of the next
        one. ``take``, given the batch and the queue, says how far the batch
        may grow. The tickets moved are committed, and woken, with ``batch``.
        """
        with self._mutex:
            if not self._queue:
                return 0
            n = max(0, self._take([*batch, *self._queue]) - len(batch))
            batch.extend(self._queue[:n])
            del self._queue[:n]
        return n

    def _lead(self, mine: Ticket[_R]) -> None:
        """Commit one batch, which starts with ``mine``, then hand leadership on.

        A caller leads only while its ticket is at the front of the queue (the
        queue is empty when nobody leads; a hand-over goes to the front
        ticket), and only the leader takes from the queue, so ``mine`` is in
        the first batch and one batch is all a leader commits.
        """
        with self._mutex:
            n = max(1, self._take(self._queue))
            batch = self._queue[:n]
            del self._queue[:n]
        try:
            self._commit(batch)
        except BaseException as exc:  # every caller of the batch raises it, the leader too
            self._finish(batch, mine, exc)
        else:
            self._finish(batch, mine, None)

    def _finish(
        self, batch: list[Ticket[_R]], mine: Ticket[_R], error: BaseException | None
    ) -> None:
        """Mark ``batch`` done, hand leadership on, then wake the batch's other callers."""
        for t in batch:
            if error is not None:
                t.error = error
            t.done = True
        with self._mutex:  # hand over first, so the next commit starts sooner
            self._hand_over()
        for t in batch:
            if t is not mine:
                t.wake()

    def _hand_over(self) -> None:
        """Make the front ticket's caller the leader and wake it, or step down (mutex held)."""
        if self._queue:
            self._leader = self._queue[0]
            self._leader.wake()
        else:
            self._leader = None

    def _withdraw(self, ticket: Ticket[_R]) -> None:
        """After an exception: unqueue ``ticket`` if still queued, pass on its leadership."""
        with self._mutex:
            if not ticket.done and ticket in self._queue:
                self._queue.remove(ticket)  # never committed now; its caller gets the exception
            if self._leader is ticket:
                self._hand_over()


def _outcome(ticket: Ticket[_R]) -> _R:
    if ticket.error is not None:
        raise ticket.error
    if ticket.result is None:
        raise RuntimeError("group commit finished a ticket without a result")
    return ticket.result
