"""The backends the storage conformance suite runs on (tests/storage/conformance/).

A backend joins by one entry in :data:`BACKENDS`: how to open it in a
directory (the same directory again reopens it when ``durable``). The in-memory
reference (:class:`~sop_verified.storage.memory_backend.MemoryBackend`) and
SQLite run now; PostgreSQL joins in a later issue with its own entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sop_verified.storage.memory_backend import MemoryBackend
from sop_verified.storage.ports import StorageBackend
from sop_verified.storage.sqlite import SQLiteBackend

ORIGIN = "conformance.local/log"
STATE_KEY = bytes(range(32))
"""The key the SQLite backend seals its derived state under in the suite (INV-11)."""


@dataclass(frozen=True)
class BackendKind:
    """How to open one backend for a test."""

    name: str
    open: Callable[[Path], StorageBackend]
    durable: bool
    """True when opening the same directory again finds what was stored."""


BACKENDS = (
    BackendKind("memory", lambda _: MemoryBackend(), durable=False),
    BackendKind(
        "sqlite", lambda d: SQLiteBackend.open(d / "sop.db", state_key=STATE_KEY), durable=True
    ),
)
"""Every backend the suite runs on; a new backend is one more entry."""


@dataclass
class Opened:
    """A backend under test, and how to reopen it where it lives."""

    kind: BackendKind
    directory: Path
    backend: StorageBackend

    def reopen(self) -> StorageBackend:
        """Close the backend and open it again in the same directory."""
        self.backend.close()
        self.backend = self.kind.open(self.directory)
        return self.backend
