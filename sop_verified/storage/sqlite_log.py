"""The log's tables in SQLite: entries, tiles of subtree hashes, signed checkpoints.

:class:`SQLiteLog` is the :class:`~sop_verified.tools.tlog_store.LogStore` of
:class:`~sop_verified.storage.sqlite.SQLiteStore` (it shares the store's
connection and lock); :class:`SQLiteLogReader` opens a database read-only and
streams it for ``sop log verify``. All three tables are insert-only: triggers
abort any UPDATE or DELETE (INV-5). A batch is one ``BEGIN IMMEDIATE`` ...
``COMMIT`` under ``synchronous=FULL`` in WAL mode, so it is durable when
:meth:`SQLiteLog.write_batch` returns.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TypeVar

from sop_verified.errors import StorageError
from sop_verified.tools.tlog_store import Batch

__all__ = ["LOG_SCHEMA", "OnBatch", "SQLiteLog", "SQLiteLogReader", "insert_rows"]

_T = TypeVar("_T")

_TABLES = ("log_entries", "log_tiles", "log_checkpoints")

LOG_SCHEMA = """
CREATE TABLE IF NOT EXISTS log_entries (
    idx INTEGER PRIMARY KEY,
    leaf_hash BLOB NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS log_tiles (
    id INTEGER PRIMARY KEY,
    hashes BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS log_checkpoints (
    size INTEGER PRIMARY KEY,
    note TEXT NOT NULL
);
""" + "".join(
    f"CREATE TRIGGER IF NOT EXISTS {t}_no_{op} BEFORE {op.upper()} ON {t}\n"
    f"BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;\n"
    for t in _TABLES
    for op in ("update", "delete")
)
"""DDL of the log tables and their append-only triggers (INV-5)."""

_MAX_VARS = 500

Tx = Callable[[], AbstractContextManager[sqlite3.Connection]]
Query = Callable[[str, Sequence[object]], list[Any]]
OnBatch = Callable[[sqlite3.Connection, Batch], Callable[[], None] | None]

_MAX_PARAMS = 900
"""Bound parameters per multi-row statement (SQLite's limit is 999 before 3.32)."""

_values_sql: dict[tuple[str, int, int], str] = {}


def insert_rows(
    db: sqlite3.Connection,
    head: str,
    rows: Sequence[Sequence[object]],
    width: int,
    tail: str = "",
) -> None:
    """Run ``head VALUES (?, ...), (?, ...) tail`` for ``rows`` in as few statements as fit.

    Args:
        db: The connection (inside the caller's transaction).
        head: The statement up to ``VALUES`` (a constant of the caller's).
        rows: The rows, each of ``width`` values.
        width: Values per row.
        tail: What follows the values (a constant, e.g. an ``ON CONFLICT`` clause).
    """
    step = max(1, _MAX_PARAMS // width)
    for at in range(0, len(rows), step):
        chunk = rows[at : at + step]
        key = (head + tail, width, len(chunk))
        sql = _values_sql.get(key)
        if sql is None:
            row = "(" + ",".join("?" * width) + ")"
            sql = _values_sql[key] = f"{head} VALUES {','.join([row] * len(chunk))}{tail}"
        db.execute(sql, [v for r in chunk for v in r])


def _tiles_sql(count: int) -> str:
    """One statement for ``count`` tile keys: only the ``?`` marks vary."""
    marks = ",".join("?" * count)
    return f"SELECT id, hashes FROM log_tiles WHERE id IN ({marks})"  # noqa: S608 - only placeholders are interpolated


class SQLiteLog:
    """The log tables of one SQLite connection, as a ``LogStore``."""

    def __init__(self, tx: Tx, query: Query, on_batch: OnBatch | None = None) -> None:
        """Use the owning store's transaction and query helpers (they hold its lock).

        Args:
            tx: Opens a write transaction that commits on exit (raises StorageError).
            query: Runs one read statement under the store's lock and returns
                its rows (raises StorageError).
            on_batch: Runs inside each batch's transaction after its rows (the
                store keeps derived tables in step); may return a callable to
                run after the commit.
        """
        self._tx = tx
        self._query = query
        self._on_batch = on_batch
        self._sql: dict[int, str] = {}

    def log_tail(self) -> tuple[int, str | None]:
        """Return the entry count (largest index + 1) and the latest checkpoint note."""
        ((size,),) = self._query("SELECT COALESCE(MAX(idx) + 1, 0) FROM log_entries", ())
        rows = self._query("SELECT note FROM log_checkpoints ORDER BY size DESC LIMIT 1", ())
        return int(size), str(rows[0][0]) if rows else None

    def read_tiles(self, keys: Sequence[int]) -> dict[int, bytes]:
        """Return stored tiles by key, one query per 500 keys."""
        out: dict[int, bytes] = {}
        for at in range(0, len(keys), _MAX_VARS):
            chunk = list(keys[at : at + _MAX_VARS])
            sql = self._sql.get(len(chunk))
            if sql is None:
                sql = self._sql[len(chunk)] = _tiles_sql(len(chunk))
            out.update(self._query(sql, chunk))
        return out

    def write_batch(self, batch: Batch) -> None:
        """Insert the batch's entries, tiles and checkpoint in one durable transaction.

        Each table gets one multi-row statement (a few hundred rows at most per
        statement): every SQLite call gives up the GIL and must win it back, so
        a batch makes a handful of calls, not one per row. The owner's
        ``on_batch`` hook runs inside the same transaction; what it returns
        runs once the transaction committed.
        """
        with self._tx() as db:
            insert_rows(db, "INSERT INTO log_entries (idx, leaf_hash, payload)", batch.entries, 3)
            insert_rows(db, "INSERT INTO log_tiles (id, hashes)", batch.tiles, 2)
            if batch.checkpoint is not None:
                db.execute(
                    "INSERT INTO log_checkpoints (size, note) VALUES (?, ?)", batch.checkpoint
                )
            after = None if self._on_batch is None else self._on_batch(db, batch)
        if after is not None:
            after()

    def read_entries(self, start: int, end: int) -> list[tuple[int, bytes, bytes]]:
        """Return entries ``[start, end)`` as ``(index, leaf hash, payload)``."""
        rows = self._query(
            "SELECT idx, leaf_hash, payload FROM log_entries"
            " WHERE idx >= ? AND idx < ? ORDER BY idx",
            (start, end),
        )
        return [(_int(r[0]), _blob(r[1]), _blob(r[2])) for r in rows]


class SQLiteLogReader:
    """A read-only view of a database's log tables, streamed for a full audit."""

    def __init__(self, path: Path) -> None:
        """Open ``path`` read-only.

        Args:
            path: The SQLite database file.

        Raises:
            StorageError: the file is missing or is not a SOP database.
        """
        if not path.is_file():
            raise StorageError(f"no database at `{path}`")
        try:
            self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            names = {
                str(r[0]) for r in self._db.execute("SELECT name FROM sqlite_master").fetchall()
            }
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open `{path}` read-only: {exc}") from exc
        missing = [t for t in _TABLES if t not in names]
        if missing:
            self._db.close()
            raise StorageError(f"`{path}` has no log tables {missing}")

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def _query(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        try:
            return fn(self._db)
        except sqlite3.Error as exc:
            raise StorageError(f"sqlite read failed: {exc}") from exc

    def entry_rows(self) -> int:
        """Return the number of entry rows."""
        row = self._query(lambda db: db.execute("SELECT COUNT(*) FROM log_entries").fetchone())
        return int(row[0])

    def _stream(self, sql: str, chunk: int) -> Iterator[Any]:
        cursor = self._query(lambda db: db.execute(sql))
        while True:
            rows = self._query(lambda _: cursor.fetchmany(chunk))
            if not rows:
                return
            yield from rows

    def iter_entries(self, chunk: int) -> Iterator[tuple[int, bytes, bytes]]:
        """Yield every entry row in index order."""
        sql = "SELECT idx, leaf_hash, payload FROM log_entries ORDER BY idx"
        for r in self._stream(sql, chunk):
            yield _int(r[0]), _blob(r[1]), _blob(r[2])

    def iter_tiles(self, chunk: int) -> Iterator[tuple[int, bytes]]:
        """Yield every stored tile in key (completion) order."""
        for r in self._stream("SELECT id, hashes FROM log_tiles ORDER BY id", chunk):
            yield _int(r[0]), _blob(r[1])

    def read_tiles(self, keys: Sequence[int]) -> dict[int, bytes]:
        """Return stored tiles by key."""
        out: dict[int, bytes] = {}
        for at in range(0, len(keys), _MAX_VARS):
            chunk = list(keys[at : at + _MAX_VARS])
            sql = _tiles_sql(len(chunk))

            def run(db: sqlite3.Connection, s: str = sql, c: list[int] = chunk) -> list[Any]:
                return db.execute(s, c).fetchall()

            out.update((_int(k), _blob(v)) for k, v in self._query(run))
        return out

    def checkpoints(self) -> list[tuple[int, str]]:
        """Return every stored checkpoint in size order."""
        rows = self._query(
            lambda db: db.execute("SELECT size, note FROM log_checkpoints ORDER BY size").fetchall()
        )
        return [(_int(r[0]), r[1] if isinstance(r[1], str) else "") for r in rows]


def _int(value: object) -> int:
    """A stored integer; a tampered non-integer reads as -1, which no check accepts."""
    return value if type(value) is int else -1


def _blob(value: object) -> bytes:
    """A stored blob; tampered text reads as its UTF-8 bytes, anything else as empty."""
    if isinstance(value, bytes):
        return value
    return value.encode("utf-8", "replace") if isinstance(value, str) else b""
