"""The embedded default backend: SQLite in WAL mode, synchronous=FULL.

One database file in the data directory holds admitted capabilities,
revocations, activated policy sets and the decision log. Every write is its
own transaction and is durable (fsynced) when the call returns. Every failure
is raised as :class:`~sop_verified.errors.StorageError`, which the kernel turns
into DENY (INV-2). Rows are only ever inserted: nothing here updates or
deletes (INV-5).
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sop_verified.errors import StorageError

__all__ = ["SQLiteStore"]

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS capabilities (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    parent_id TEXT,
    claims BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS revocations (
    id TEXT PRIMARY KEY,
    at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS policy_sets (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    digest TEXT NOT NULL,
    document BLOB NOT NULL,
    activated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS log_entries (
    idx INTEGER PRIMARY KEY,
    leaf_hash BLOB NOT NULL,
    payload BLOB NOT NULL
);
CREATE TRIGGER IF NOT EXISTS log_entries_no_update BEFORE UPDATE ON log_entries
BEGIN SELECT RAISE(ABORT, 'log entries are append-only'); END;
CREATE TRIGGER IF NOT EXISTS log_entries_no_delete BEFORE DELETE ON log_entries
BEGIN SELECT RAISE(ABORT, 'log entries are append-only'); END;
"""


def _leaf_hash(payload: bytes) -> bytes:
    # RFC 6962 leaf hash: SHA-256(0x00 || entry)
    return hashlib.sha256(b"\x00" + payload).digest()


class SQLiteStore:
    """Capability, policy and log storage in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM log_entries").fetchone()
            self._size = int(row[0])
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the sqlite store `{path}`: {exc}") from exc

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StorageError(f"sqlite write failed: {exc}") from exc
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock:
            try:
                return fn(self._db)
            except sqlite3.Error as exc:
                raise StorageError(f"sqlite read failed: {exc}") from exc

    def self_test(self) -> None:
        """SQLite's quick integrity check; raise StorageError unless it says ``ok``."""
        rows = self._read(lambda db: db.execute("PRAGMA quick_check").fetchall())
        if [tuple(r) for r in rows] != [("ok",)]:
            raise StorageError(f"sqlite integrity check failed: {rows[:3]}")

    def verify_tail(self) -> None:
        """The last log entry's stored leaf hash matches its payload (read the tail only)."""
        if self._size == 0:
            return
        ((idx, leaf, payload),) = self.log_entries(self._size - 1)
        if _leaf_hash(payload) != leaf:
            raise StorageError(f"log entry `{idx}`: stored leaf hash does not match its payload")

    # CapabilityStore
    def save_capability(self, cap_id: str, parent_id: str | None, claims: bytes) -> None:
        """Store an admitted capability (write-once by id)."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO capabilities (id, parent_id, claims) VALUES (?, ?, ?)",
                (cap_id, parent_id, claims),
            )

    def load_capabilities(self) -> list[tuple[str, str | None, bytes]]:
        """All admitted capabilities in admission order."""
        rows = self._read(
            lambda db: db.execute(
                "SELECT id, parent_id, claims FROM capabilities ORDER BY seq"
            ).fetchall()
        )
        return [(str(r[0]), None if r[1] is None else str(r[1]), bytes(r[2])) for r in rows]

    def save_revocation(self, cap_id: str, at: int) -> None:
        """Record a revocation (idempotent: the first time wins)."""
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO revocations (id, at) VALUES (?, ?)", (cap_id, at))

    def load_revocations(self) -> dict[str, int]:
        """All revocations, id to time."""
        rows = self._read(lambda db: db.execute("SELECT id, at FROM revocations").fetchall())
        return {str(r[0]): int(r[1]) for r in rows}

    # PolicyStore
    def save_policy_set(self, digest: str, document: bytes, activated_at: int) -> None:
        """Record a policy-set activation."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO policy_sets (digest, document, activated_at) VALUES (?, ?, ?)",
                (digest, document, activated_at),
            )

    def load_active_policy_set(self) -> tuple[str, bytes] | None:
        """The latest activation, or None."""
        row = self._read(
            lambda db: db.execute(
                "SELECT digest, document FROM policy_sets ORDER BY seq DESC LIMIT 1"
            ).fetchone()
        )
        return None if row is None else (str(row[0]), bytes(row[1]))

    # DecisionLog
    def append(self, payload: bytes) -> int:
        """Durably append one entry; return its index."""
        with self._tx() as db:
            idx = self._size
            db.execute(
                "INSERT INTO log_entries (idx, leaf_hash, payload) VALUES (?, ?, ?)",
                (idx, _leaf_hash(payload), payload),
            )
        self._size = idx + 1
        return idx

    def log_size(self) -> int:
        """Number of entries in the log."""
        return self._size

    def log_entries(self, start: int = 0, end: int | None = None) -> list[tuple[int, bytes, bytes]]:
        """Entries ``[start, end)`` as (index, leaf hash, payload)."""
        stop = self._size if end is None else end
        rows: list[Any] = self._read(
            lambda db: db.execute(
                "SELECT idx, leaf_hash, payload FROM log_entries"
                " WHERE idx >= ? AND idx < ? ORDER BY idx",
                (start, stop),
            ).fetchall()
        )
        return [(int(r[0]), bytes(r[1]), bytes(r[2])) for r in rows]
