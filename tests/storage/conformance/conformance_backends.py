"""The backends the storage conformance suite runs on (tests/storage/conformance/).

A backend joins by one entry in :data:`BACKENDS`: how to open it in a
directory (the same directory again reopens it when ``durable``), and what to
remove once the test is done. The in-memory reference
(:class:`~sop_verified.storage.memory_backend.MemoryBackend`), SQLite and
PostgreSQL run. PostgreSQL is the real server (tests/pg_server.py); each test
gets a fresh schema, named in a file of its directory and dropped afterwards.
A server that is not answering fails the PostgreSQL cases (never skips them):
``.ci/run`` starts it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pg_server import DSN, drop_schema, fail_down, new_schema_name

from sop_verified.errors import StorageError
from sop_verified.storage.memory_backend import MemoryBackend
from sop_verified.storage.ports import StorageBackend
from sop_verified.storage.postgres import PostgresBackend
from sop_verified.storage.sqlite import SQLiteBackend

ORIGIN = "conformance.local/log"
STATE_KEY = bytes(range(32))
"""The key the SQLite and PostgreSQL backends seal their derived state under (INV-11)."""


def postgres_schema(directory: Path) -> str:
    """The schema of the test working in ``directory`` (a fresh name, kept in a file)."""
    named = directory / "postgres-schema"
    if not named.exists():
        named.write_text(new_schema_name())
    return named.read_text()


def open_postgres(directory: Path, *, state_key: bytes | None = STATE_KEY) -> PostgresBackend:
    """The PostgreSQL backend of the test in ``directory``; fails it if the server is down."""
    try:
        return PostgresBackend.open(DSN, schema=postgres_schema(directory), state_key=state_key)
    except StorageError as exc:
        if "cannot connect" not in str(exc):
            raise
        down = str(exc)
    return fail_down(down)  # outside the handler: the message alone, not a chain of tracebacks


def drop_postgres(directory: Path) -> None:
    """Drop the schema the test in ``directory`` worked in (if it made one)."""
    named = directory / "postgres-schema"
    if named.exists():
        drop_schema(named.read_text())


@dataclass(frozen=True)
class BackendKind:
    """How to open one backend for a test."""

    name: str
    open: Callable[[Path], StorageBackend]
    durable: bool
    """True when opening the same directory again finds what was stored."""
    cleanup: Callable[[Path], None] | None = None
    """Removes what the backend left outside the directory once the test is done."""


BACKENDS = (
    BackendKind("memory", lambda _: MemoryBackend(), durable=False),
    BackendKind(
        "sqlite", lambda d: SQLiteBackend.open(d / "sop.db", state_key=STATE_KEY), durable=True
    ),
    BackendKind("postgresql", open_postgres, durable=True, cleanup=drop_postgres),
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
