"""Test-only event sources for the NATS sink, until the log's real projection lands.

:class:`RawLogEvents` wraps each raw entry of a real SOP log as an
:class:`~sop_verified.events.model.Event` (id ``<origin>/<index>``, a minimal
JSON body); :class:`ListEvents` is a growing list of events with no SOP at all.
Both honour the seam: ``read(start, end)`` gives the events at positions
``[start, end)``, in order; they have no checkpoint events, so an entry's
position is its index. The Ops_Event_Bus's CloudEvents projection replaces them
in production.
"""

from __future__ import annotations

import threading

import orjson

from sop_verified.events.model import Event
from sop_verified.storage.ports import StorageBackend
from sop_verified.tools.tlog import TransparencyLog

__all__ = ["ListEvents", "RawLogEvents", "raw_log_events"]


def _position_of(origin: str, event_id: str) -> int | None:
    head, _, tail = event_id.rpartition("/")
    return int(tail) if head == origin and tail.isdigit() else None


class RawLogEvents:
    """Each entry of a SOP log as a minimal event: ``{"id", "index", "type"}``."""

    def __init__(self, log: TransparencyLog, store: StorageBackend) -> None:
        self._log = log
        self._store = store

    def size(self) -> int:
        return self._log.size

    def position_of(self, event_id: str) -> int | None:
        return _position_of(self._log.origin, event_id)

    def entry_position(self, index: int) -> int:
        return index

    def read(self, start: int, end: int) -> list[Event]:
        out = []
        for index, _leaf, payload in self._store.log.log_entries(start, end):
            kind = str(orjson.loads(payload).get("type", "entry"))
            event_id = f"{self._log.origin}/{index}"
            body = orjson.dumps({"id": event_id, "index": index, "type": f"sop.{kind}.v1"})
            out.append(Event(index, event_id, f"sop.{kind}.v1", body))
        return out


def raw_log_events(log: TransparencyLog, store: StorageBackend) -> RawLogEvents:
    """The :data:`~sop_verified.nexus.root.EventSourceFactory` the tests boot SOP with."""
    return RawLogEvents(log, store)


class ListEvents:
    """``count`` events of origin ``origin``, growing with :meth:`grow` (thread-safe)."""

    def __init__(self, origin: str = "test.example/log", count: int = 0) -> None:
        self.origin = origin
        self._size = count
        self._lock = threading.Lock()

    def grow(self, n: int) -> None:
        with self._lock:
            self._size += n

    def size(self) -> int:
        return self._size

    def position_of(self, event_id: str) -> int | None:
        return _position_of(self.origin, event_id)

    def entry_position(self, index: int) -> int:
        return index

    def read(self, start: int, end: int) -> list[Event]:
        end = min(end, self._size)
        return [
            Event(
                i,
                f"{self.origin}/{i}",
                "sop.test.v1",
                orjson.dumps({"id": f"{self.origin}/{i}", "index": i, "type": "sop.test.v1"}),
            )
            for i in range(start, end)
        ]
