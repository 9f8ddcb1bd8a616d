"""Group commit: concurrent callers share one durable write, each acknowledged after it.

Callers queue a :class:`Ticket`; one of them at a time becomes the leader,
takes queued tickets in order (``take`` decides how many) and runs the
``commit`` callback on them while the others wait. ``commit`` must fill in
each ticket's result or raise; a raised exception becomes every ticket's
error. A caller returns only when its own ticket was committed, so nothing is
acknowledged before it is durable.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["GroupCommit", "Ticket"]

_R = TypeVar("_R")


class Ticket(Generic[_R]):
    """Work one caller waits on; the leader sets ``result`` or ``error``."""

    __slots__ = ("done", "error", "items", "result", "tag")

    def __init__(self, items: Sequence[Any], tag: Any = None) -> None:
        """Queue ``items`` (with an optional ``tag`` that ``take`` may read)."""
        self.items = items
        self.tag = tag
        self.result: _R | None = None
        self.error: BaseException | None = None
        self.done = False


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
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[Ticket[_R]] = []
        self._leader = False

    def submit(self, ticket: Ticket[_R]) -> _R:
        """Queue ``ticket`` and return its result once its batch committed.

        Args:
            ticket: The work.

        Returns:
            The result ``commit`` set.

        Raises:
            BaseException: whatever ``commit`` raised for the ticket's batch.
        """
        with self._cond:
            self._queue.append(ticket)
            while self._leader and not ticket.done:
                self._cond.wait()
            leading = not ticket.done
            if leading:
                self._leader = True
        if leading:
            self._lead(ticket)
        if ticket.error is not None:
            raise ticket.error
        if ticket.result is None:
            raise RuntimeError("group commit finished a ticket without a result")
        return ticket.result

    def _lead(self, mine: Ticket[_R]) -> None:
        try:
            while not mine.done:
                with self._cond:
                    n = max(1, self._take(self._queue))
                    batch, self._queue = self._queue[:n], self._queue[n:]
                try:
                    self._commit(batch)
                except BaseException as exc:
                    for t in batch:
                        t.error = exc
                    if not isinstance(exc, Exception):
                        raise
                finally:
                    with self._cond:
                        for t in batch:
                            t.done = True
                        self._cond.notify_all()
        finally:
            with self._cond:
                self._leader = False
                self._cond.notify_all()
