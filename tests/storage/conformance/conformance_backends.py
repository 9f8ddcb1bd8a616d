"""The backends the storage conformance suite runs on (tests/storage/conformance/).

A backend joins by one entry in :data:`BACKENDS`: how to open it in a
directory (the same directory again reopens it when ``durable``), and what to
remove once the test is done. The in-memory reference
(:class:`~sop_verified.storage.memory_backend.MemoryBackend`), SQLite and
PostgreSQL run. PostgreSQL is the real server (``SOP_TEST_POSTGRES_DSN``, by
default the machine's at 127.0.0.1:5432, database ``test``); each test gets a
fresh schema, named in a file of its directory and dropped afterwards. A
server that is not answering fails the PostgreSQL cases (never skips them):
``.ci/run`` starts it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from sop_verified.errors import StorageError
from sop_verified.storage.memory_backend import MemoryBackend
from sop_verified.storage.ports import StorageBackend
from sop_verified.storage.postgres import PostgresBackend, redact_dsn
from sop_verified.storage.sqlite import SQLiteBackend

ORIGIN = "conformance.local/log"
STATE_KEY = bytes(range(32))
"""The key the SQLite and PostgreSQL backends seal their derived state under (INV-11)."""

POSTGRES_DSN = os.environ.get(
    "SOP_TEST_POSTGRES_DSN", "host=127.0.0.1 port=5432 dbname=test user=postgres"
)
"""The PostgreSQL server the suite runs against."""

_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


def postgres_schema(directory: Path) -> str:
    """The schema of the test working in ``directory`` (a fresh random name, kept in a file)."""
    named = directory / "postgres-schema"
    if not named.exists():
        named.write_text(f"sop_test_{secrets.token_hex(8)}")
    return named.read_text()


def open_postgres(directory: Path, *, state_key: bytes | None = STATE_KEY) -> PostgresBackend:
    """The PostgreSQL backend in the schema of ``directory``; fails the test if the server is down."""
    try:
        return PostgresBackend.open(
            POSTGRES_DSN, schema=postgres_schema(directory), state_key=state_key
        )
    except StorageError as exc:
        if "cannot connect" not in str(exc):
            raise
        pytest.fail(
            f"PostgreSQL is not answering at `{redact_dsn(POSTGRES_DSN)}` ({exc}); start it"
            f" with `{_START}` (.ci/run does), or set SOP_TEST_POSTGRES_DSN",
            pytrace=False,
        )


def drop_postgres(directory: Path) -> None:
    """Drop the schema the test in ``directory`` worked in (if it made one)."""
    named = directory / "postgres-schema"
    if not named.exists():
        return
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(named.read_text()))
        )


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
