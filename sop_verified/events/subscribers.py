"""In-process subscribers: ``sop.events.subscribe(...)``, fed by the log, never feeding back on it.

The log tells the hub one thing after each batch is durable, signed and
anchored: that it grew (:meth:`EventHub.notify`, a wake-up under a lock no
subscriber holds while it reads). Nothing is projected, queued
or copied on the decision path, so a subscriber, however slow, cannot slow a
decision, and a subscriber that never reads costs nothing.

Each :class:`Subscription` has a cursor, the position of the next event it
reads (the log's events are its entries and checkpoints, in log order:
:mod:`sop_verified.events.model`), and a bounded queue of at most ``max_queue``
events. When its queue is empty it reads the next ``max_queue`` events from
the log (through the authenticated
:class:`~sop_verified.events.model.EventSource`), keeps those its type filter
accepts and moves the cursor past them. A subscriber the log has left more than
``max_queue`` events behind is *behind*: it catches up the same way, by
position, so it never loses or repeats an event,
and its memory stays bounded by its queue. An error reading the log (an entry
that does not verify, a storage failure) is raised to the subscriber, with the
cursor where it was: nothing is skipped.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Final

from sop_verified.core.contracts import ensure, require
from sop_verified.events.kinds import CHECKPOINT, GENERIC, KINDS
from sop_verified.events.model import Event, EventSource

__all__ = ["DEFAULT_QUEUE", "EVENT_TYPES", "EventHub", "Subscription"]

EVENT_TYPES: Final = frozenset(
    {GENERIC.event_type, CHECKPOINT.event_type, *(k.event_type for k in KINDS.values())}
)
"""Every CloudEvents ``type`` SOP emits."""

DEFAULT_QUEUE: Final = 1024
"""A subscription's default queue bound (events)."""

MAX_QUEUE: Final = 1 << 16

RECHECK_SECONDS: Final = 1.0
"""How often a waiting subscriber looks at the log's size without being notified."""


class EventHub:
    """SOP's in-process event bus over one :class:`EventSource` (wired by nexus)."""

    def __init__(self, source: EventSource) -> None:
        """Serve the events of ``source``; the log calls :meth:`notify` after each batch.

        Raises:
            StorageError: the log's size could not be read.
        """
        self._source = source
        self._cond = threading.Condition()
        self._closed = False
        source.size()  # fails now, not in a subscriber, when the log cannot be read

    @property
    def source(self) -> EventSource:
        """Where the events are read from."""
        return self._source

    @property
    def size(self) -> int:
        """How many events there are now (the source's count, read when asked).

        It covers the entries a replica's log took from the other replicas of a
        shared store without a batch of its own (``TransparencyLog.refresh``), which
        notify no one.

        Raises:
            StorageError: the log's checkpoints could not be read.
        """
        return self._source.size()

    @property
    def closed(self) -> bool:
        """True once SOP closed: every subscription ends after its queued events."""
        return self._closed

    def notify(self) -> None:
        """The log committed and signed a batch: wake the subscribers.

        Called on the log's commit path, so it only wakes waiting subscribers; it
        never reads, projects or blocks on one.
        """
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        """End every subscription (SOP is closing; the log will not be readable)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wait_past(
        self, index: int, timeout: float | None, stop: Callable[[], bool] = lambda: False
    ) -> bool:
        """Wait until event ``index`` exists, the hub closes, ``stop()`` or ``timeout``.

        A notify wakes the waiters at once; entries taken from other replicas
        without one are seen within :data:`RECHECK_SECONDS`.

        Returns:
            True when event ``index`` exists.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not (self.size > index or self._closed or stop()):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cond.wait(RECHECK_SECONDS if left is None else min(left, RECHECK_SECONDS))
            return self.size > index

    def wake(self) -> None:
        """Wake every waiting subscriber (one of them was closed)."""
        with self._cond:
            self._cond.notify_all()

    @require(lambda max_queue: 1 <= max_queue <= MAX_QUEUE, f"a queue of 1 to {MAX_QUEUE}")
    @require(lambda start: start is None or (type(start) is int and start >= 0), "a position")
    @ensure(lambda start, result: start is None or result.next_index == start)
    def subscribe(
        self,
        types: Iterable[str] | None = None,
        *,
        start: int | None = None,
        max_queue: int = DEFAULT_QUEUE,
    ) -> Subscription:
        """Subscribe to events, from position ``start`` on (default: from now on).

        Args:
            types: the CloudEvents types to receive (``sop.decision.v1``, ...);
                None: every type.
            start: the position of the first event to receive (0: the whole log;
                it may be past the end: the subscription waits for it;
                ``source.entry_position(i)`` is entry ``i``'s).
            max_queue: the most events the subscription holds at once.

        Returns:
            The subscription: iterate it (blocks; ends when SOP closes) or
            :meth:`Subscription.poll` it.

        Raises:
            ValueError: an unknown event type.
        """
        wanted = None if types is None else frozenset(types)
        unknown = sorted((wanted or frozenset()) - EVENT_TYPES)
        if unknown:
            raise ValueError(
                f"unknown event type `{unknown[0]}`; accepted: {', '.join(sorted(EVENT_TYPES))}"
            )
        first = self.size if start is None else start
        return Subscription(self, wanted, first, max_queue)


class Subscription:
    """One subscriber's view: a cursor into the log and a bounded queue of events.

    Use it from one thread; it is also safe to share (calls are serialised).
    """

    def __init__(
        self, hub: EventHub, types: frozenset[str] | None, start: int, max_queue: int
    ) -> None:
        """Made by :meth:`EventHub.subscribe`."""
        self._hub = hub
        self._types = types
        self._next = start
        self._max = max_queue
        self._queue: deque[Event] = deque()
        self._lock = threading.Lock()
        self._closed = False
        self._behind = False
        self.catch_ups = 0
        """How many times the subscription found itself behind and read on from the log."""

    @property
    def next_index(self) -> int:
        """The position of the next event this subscription reads from the log."""
        return self._next

    @property
    def behind(self) -> bool:
        """Whether the log was more than ``max_queue`` events ahead at the last read."""
        return self._behind

    @property
    def lag(self) -> int:
        """Events committed but not yet handed to the subscriber (queued or unread)."""
        return max(0, self._hub.size - self._next) + len(self._queue)

    def close(self) -> None:
        """Stop: the queue is dropped and iteration ends (a waiting ``poll`` returns None)."""
        self._closed = True
        self._queue.clear()
        self._hub.wake()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        """The next event; blocks until there is one, ends when SOP or the subscription closes.

        Raises:
            IntegrityError: the next entry or checkpoint does not verify against the
                signed log.
            StorageError: the log could not be read.
        """
        event = self.poll(None)
        if event is None:
            raise StopIteration
        return event

    @require(lambda timeout: timeout is None or timeout >= 0, "a timeout in seconds")
    def poll(self, timeout: float | None = 0.0) -> Event | None:
        """The next event, waiting up to ``timeout`` seconds for one (None: until there is one).

        Returns:
            The event, or None when none came in time (or the subscription ended).

        Raises:
            IntegrityError: the next entry does not verify against the signed log
                (the cursor stays on it).
            StorageError: the log could not be read.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while not self._closed:
                if self._queue:
                    return self._queue.popleft()
                if self._fill():
                    continue
                if self._hub.closed:
                    return None
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._hub.wait_past(self._next, left, lambda: self._closed)
            return None

    def _fill(self) -> bool:
        """Read up to ``max_queue`` events from the cursor on; False when there are none."""
        if self._hub.closed:
            return False
        known = self._hub.size
        if self._next >= known:
            return False
        self._behind = known - self._next > self._max
        if self._behind:
            self.catch_ups += 1
        end = min(known, self._next + self._max)
        events = self._hub.source.read(self._next, end)  # raises: the cursor stays put
        types = self._types
        self._queue.extend(e for e in events if types is None or e.type in types)
        self._next = end
        return True
