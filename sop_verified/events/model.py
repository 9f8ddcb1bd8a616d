"""The event and the source a sink reads events from.

One log entry projects to exactly one event, so a sink's cursor is a log index:
``EventSource.read(start, end)`` returns one event per entry in ``[start, end)``,
in index order. A sink that has delivered everything below ``n`` resumes with
``read(n, ...)`` and never skips or repeats an entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["Event", "EventSource"]


@dataclass(frozen=True, slots=True)
class Event:
    """One CloudEvent, ready to send.

    Attributes:
        index: the log index of the entry the event is derived from.
        id: the CloudEvents ``id``: ``<origin>/<index>``, unique per log.
        type: the CloudEvents ``type``: ``sop.<kind>.v1``.
        body: the CloudEvent in the structured JSON format (UTF-8), exactly
            as it leaves SOP (the telemetry boundary already applied).
    """

    index: int
    id: str
    type: str
    body: bytes


class EventSource(Protocol):
    """Where events are read from: the log, projected."""

    def size(self) -> int:
        """How many log entries there are now (events exist for ``[0, size)``)."""
        ...

    def read(self, start: int, end: int) -> list[Event]:
        """The events of entries ``[start, end)``, one per entry, in index order.

        Raises:
            StorageError: the log could not be read.
            IntegrityError: an entry did not verify against the signed log.
        """
        ...
