"""The events of a log, read through its authenticated path: proved first, then projected.

:class:`LogEventSource` is the :class:`~sop_verified.events.model.EventSource`
of an opened log. A range of entries is read with
:func:`~sop_verified.core.persistence.logged.proved_entries`: their leaf
hashes are computed from the payloads and, with the stored nodes around the
range, must give the root of the latest signed checkpoint the log holds (as
an RFC 9162 inclusion proof per entry would prove); only then are they
projected. An entry that does not verify raises
:class:`~sop_verified.errors.IntegrityError` and never becomes an event: the
bus cannot say something the signed log does not. Events exist for the
entries a signed checkpoint covers, ``[0, checkpoint size)``.
"""

from __future__ import annotations

from collections.abc import Callable

from sop_verified.core.contracts import ensure, require
from sop_verified.core.persistence.logged import proved_entries
from sop_verified.events.boundary import TelemetryBoundary
from sop_verified.events.model import Event
from sop_verified.events.projection import project_entry
from sop_verified.tools.tlog import TransparencyLog

__all__ = ["LogEventSource"]


class LogEventSource:
    """The events of an opened, signed log (an ``EventSource``)."""

    def __init__(
        self,
        log: Callable[[], TransparencyLog],
        boundary: TelemetryBoundary,
    ) -> None:
        """Read events from the log ``log()`` returns, with ``boundary`` applied.

        Args:
            log: returns the opened log (called per read: a reader may reopen it,
                and SOP's own log object is the one its services append to).
            boundary: what of the request context may leave SOP.
        """
        self._log = log
        self._boundary = boundary

    @property
    def boundary(self) -> TelemetryBoundary:
        """The telemetry boundary applied to every event."""
        return self._boundary

    @ensure(lambda result: result >= 0)
    def size(self) -> int:
        """How many entries a signed checkpoint covers now (events exist for ``[0, size)``).

        Raises:
            StorageError: the log is not open.
        """
        checkpoint = self._log().checkpoint
        return 0 if checkpoint is None else checkpoint.size

    @require(lambda start, end: 0 <= start <= end, "a range of log indexes")
    @ensure(lambda start, end, result: [e.index for e in result] == list(range(start, end)))
    def read(self, start: int, end: int) -> list[Event]:
        """The events of entries ``[start, end)``, one per entry, in index order.

        Args:
            start: the first log index.
            end: one past the last; at most :meth:`size`.

        Returns:
            One event per entry.

        Raises:
            IntegrityError: an entry is not the entry the signed tree holds at its
                index (no event is made of it, nor of any entry after it in this read).
            StorageError: the log could not be read.
            ValueError: ``end`` is past the signed size (those events do not exist yet).
        """
        log = self._log()
        checkpoint = log.checkpoint
        size = 0 if checkpoint is None else checkpoint.size
        if end > size:
            raise ValueError(f"entries `[{start}, {end})` reach past the signed size `{size}`")
        origin = log.origin
        entries = proved_entries(log, start, end, what="the entry")  # spec: INV-5 — proved,
        return [  # then told
            project_entry(origin, index, entry, self._boundary)
            for index, entry in zip(range(start, end), entries, strict=True)
        ]
