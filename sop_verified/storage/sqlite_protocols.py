"""The protocol record index in SQLite: which log entries are DRAC, EMP and CSP records.

It lives in the same database file as the log (its own connection, WAL,
``synchronous=FULL``, a busy timeout so it waits for the log's group commit)
and holds no protocol data of its own: a row is a log index, the record's
kind and the receipt the append returned; :meth:`SQLiteRecordIndex.records`
reads each payload from the log's own ``log_entries`` table. Rows are
insert-only (triggers abort UPDATE and DELETE); the high-water mark says
below which log index every record is indexed.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sop_verified.errors import StorageError
from sop_verified.storage.sqlite_db import READ_ONLY, connect, explained
from sop_verified.tools.private_fs import ensure_private_file

__all__ = ["PROTOCOL_SCHEMA", "SQLiteRecordIndex"]

PROTOCOL_SCHEMA = """
CREATE TABLE IF NOT EXISTS protocol_records (
    log_index INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    receipt BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS protocol_state (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS protocol_records_no_update BEFORE UPDATE ON protocol_records
BEGIN SELECT RAISE(ABORT, 'protocol records are insert-only'); END;
CREATE TRIGGER IF NOT EXISTS protocol_records_no_delete BEFORE DELETE ON protocol_records
BEGIN SELECT RAISE(ABORT, 'protocol records are insert-only'); END;
"""
"""DDL of the record index; the payloads stay in ``log_entries``."""

_MARK = "indexed_to"
_BUSY_MS = 30_000


class SQLiteRecordIndex:
    """The protocol record index (a :class:`~sop_verified.protocols.ledger.RecordIndex`)."""

    def __init__(
        self,
        path: Path,
        *,
        prepare: Callable[[sqlite3.Connection], None] | None = None,
        explain: Callable[[], str | None] | None = None,
        before_commit: Callable[[sqlite3.Connection, tuple[int, int] | None], None] | None = None,
        read_only: bool = False,
    ) -> None:
        """Open the index in the database at ``path`` (the log's database).

        ``prepare`` is called on the new connection (the state seal's
        functions); ``explain`` says why the last failed write failed;
        ``before_commit`` runs before every ``COMMIT`` (the seal's close);
        ``read_only`` opens the existing file read-only and refuses every write.

        Raises:
            StorageError: the database cannot be opened.
        """
        self._lock = threading.Lock()
        self._explain = explain
        self._before_commit = before_commit
        self._path = path
        self._read_only = read_only
        try:
            if not read_only:
                ensure_private_file(path)  # 0600 before SQLite creates it (and -wal, -shm) 0644
            self._db = connect(path, read_only=read_only)
            if prepare is not None:
                prepare(self._db)
            self._db.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
            if not read_only:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.executescript(PROTOCOL_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"cannot open the protocol index in `{path}`: {exc}") from exc

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def _write(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        if self._read_only:
            raise StorageError(f"the protocol index in `{self._path}` {READ_ONLY}")
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for sql, params in statements:
                    self._db.execute(sql, params)
                if self._before_commit is not None:
                    self._before_commit(self._db, None)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                detail = explained(exc, self._explain)
                raise StorageError(f"the protocol index write failed: {detail}") from exc

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StorageError(f"the protocol index read failed: {exc}") from exc

    def add(self, index: int, kind: str, receipt: bytes, *, indexed_to: int) -> None:
        """Index one record, once (a row already there was not SOP's), and raise the mark."""
        self._write(
            [
                (
                    "INSERT INTO protocol_records (log_index, kind, receipt) VALUES (?, ?, ?)",
                    (index, kind, receipt),
                ),
                *self._mark(indexed_to),
            ]
        )

    def indexed_to(self) -> int:
        """Every record below this log index is indexed."""
        rows = self._rows("SELECT value FROM protocol_state WHERE key = ?", (_MARK,))
        return int(rows[0][0]) if rows else 0

    def set_indexed_to(self, index: int) -> None:
        """Raise the mark to ``index`` (never lowers it)."""
        self._write(self._mark(index))

    @staticmethod
    def _mark(index: int) -> list[tuple[str, tuple[Any, ...]]]:
        return [
            (
                "INSERT INTO protocol_state (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)",
                (_MARK, index),
            )
        ]

    def records(self) -> list[tuple[int, str, bytes, bytes]]:
        """Every indexed record with its payload from the log, in log order.

        Raises:
            StorageError: the read failed, or an indexed entry is missing from the log.
        """
        rows = self._rows(
            "SELECT r.log_index, r.kind, e.payload, r.receipt FROM protocol_records r "
            "LEFT JOIN log_entries e ON e.idx = r.log_index ORDER BY r.log_index"
        )
        missing = [int(r[0]) for r in rows if r[2] is None]
        if missing:
            raise StorageError(f"protocol records `{missing[:5]}` are missing from the log")
        return [(int(r[0]), str(r[1]), bytes(r[2]), bytes(r[3])) for r in rows]
