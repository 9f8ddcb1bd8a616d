"""The event and the source a sink reads events from.

A log's events are one per entry and one per checkpoint it signed, in log order
(a checkpoint right after the last entry it covers), and each stands at a
*position* in that sequence: 0, 1, 2, ... with no gap. A sink's cursor is a
position: ``EventSource.read(start, end)`` returns the events at positions
``[start, end)``, in order. A sink that has delivered everything below ``n``
resumes with ``read(n, ...)`` and never skips or repeats an event. An entry's
log index and a checkpoint's size are in the event itself (``sopindex``,
``sopsize``); ``EventSource.position_of`` finds the position of an event id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["Event", "EventSource"]


@dataclass(frozen=True, slots=True)
class Event:
    """One CloudEvent, ready to send.

    Attributes:
        position: where it stands among the log's events (entries and checkpoints).
        id: the CloudEvents ``id``: ``<origin>/<index>`` for an entry,
            ``<origin>/checkpoint/<size>`` for a checkpoint; unique per log.
        type: the CloudEvents ``type``: ``sop.<kind>.v1``.
        body: the CloudEvent in the structured JSON format (UTF-8), exactly
            as it leaves SOP (the telemetry boundary already applied).
    """

    position: int
    id: str
    type: str
    body: bytes


class EventSource(Protocol):
    """Where events are read from: the log, projected."""

    def size(self) -> int:
        """How many events there are now (events exist at positions ``[0, size)``)."""
        ...

    def position_of(self, event_id: str) -> int | None:
        """The position of the event ``event_id`` names, or None for an id that is not this
        source's (the event itself may not exist yet: compare with :meth:`size`)."""
        ...

    def entry_position(self, index: int) -> int:
        """The position of the event of log entry ``index`` (it may not exist yet)."""
        ...

    def read(self, start: int, end: int) -> list[Event]:
        """The events at positions ``[start, end)``, in order.

        Raises:
            StorageError: the log could not be read.
            IntegrityError: an entry did not verify against the signed log.
        """
        ...
