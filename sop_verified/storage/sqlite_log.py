"""The log's tables in SQLite: entries, tiles of subtree hashes, signed checkpoints.

:class:`SQLiteLog` is the :class:`~sop_verified.tools.tlog_store.LogStore` of
:class:`~sop_verified.storage.sqlite.SQLiteBackend` (it shares the backend's
connection and lock); :class:`SQLiteLogReader` opens a database read-only and
streams it for ``sop log verify``. All three tables are insert-only: triggers
abort any UPDATE or DELETE (INV-5). A batch is one ``BEGIN IMMEDIATE`` ...
``COMMIT`` under ``synchronous=FULL`` in WAL mode, so it is durable when
:meth:`SQLiteLog.write_batch` returns; the batch's unit of work (persistence
index rows, small blobs: :mod:`sop_verified.storage.unit_of_work`) is applied
in that same transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sop_verified.errors import LogHeadMovedError, StorageError
from sop_verified.storage.persist_index import EntryIndexer
from sop_verified.storage.sqlite_db import SQLiteDB, insert_rows, read_only_uri
from sop_verified.storage.sqlite_persist import apply_unit, catch_up, indexed_to
from sop_verified.storage.unit_of_work import UnitOfWork, plan_unit
from sop_verified.tools.tlog_store import Batch

__all__ = ["LOG_SCHEMA", "SQLiteLog", "SQLiteLogReader", "insert_rows", "read_only_uri"]

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


def _tiles_sql(count: int) -> str:
    """One statement for ``count`` tile keys: only the ``?`` marks vary."""
    marks = ",".join("?" * count)
    return f"SELECT id, hashes FROM log_tiles WHERE id IN ({marks})"  # noqa: S608 - only placeholders are interpolated


class SQLiteLog:
    """The log tables of one SQLite database, as an ``AtomicLogStore``."""

    def __init__(
        self, db: SQLiteDB, on_versions: Callable[[dict[int, int]], None] | None = None
    ) -> None:
        """Use ``db``'s writer connection and lock.

        Args:
            db: The database (its schema holds :data:`LOG_SCHEMA` and the index's tables).
            on_versions: Told, once a batch committed, the versions its unit gave
                its written effects (the persistence index's memo).
        """
        self._db = db
        self._query = db.query
        self._on_versions = on_versions
        self._indexer: EntryIndexer | None = None
        self._indexed_to: int | None = None  # what the index reflects, as last committed here
        self._sql: dict[int, str] = {}

    def follow(self, indexer: EntryIndexer) -> None:
        """Keep the persistence index in step with the log, batch by batch.

        Catches up on the entries appended since the index last followed the
        log (all of them for an older database), then derives each later
        batch's unit of work with ``indexer``.

        Raises:
            StorageError: the catch-up failed.
        """
        behind = self._db.query(
            "SELECT 1 FROM log_entries WHERE idx >= COALESCE("
            "(SELECT value FROM persist_state WHERE key = 'indexed_to'), 0) LIMIT 1"
        )
        if behind:  # a write transaction only when there is something to index
            with self._db.tx() as db:
                catch_up(db, indexer)
        self._indexer = indexer
        self._indexed_to = None  # read from the database at the next batch

    def log_tail(self) -> tuple[int, str | None]:
        """Return the entry count (largest index + 1) and the latest checkpoint note."""
        ((size,),) = self._query("SELECT COALESCE(MAX(idx) + 1, 0) FROM log_entries", ())
        rows = self._query("SELECT note FROM log_checkpoints ORDER BY size DESC LIMIT 1", ())
        return int(size), str(rows[0][0]) if rows else None

    def read_tiles(self, keys: Sequence[int]) -> dict[int, bytes]:
        """Return stored tiles by key, one query per 500 keys, on the reader connection (a
        proof or an event read never waits for a commit; the tiles of a batch being
        written are the log's ``pending`` ones, and are read only once it committed)."""
        out: dict[int, bytes] = {}
        for at in range(0, len(keys), _MAX_VARS):
            chunk = list(keys[at : at + _MAX_VARS])
            sql = self._sql.get(len(chunk))
            if sql is None:
                sql = self._sql[len(chunk)] = _tiles_sql(len(chunk))
            out.update(self._db.read_query(sql, chunk))
        return out

    def write_batch(self, batch: Batch) -> None:
        """Insert the batch's entries, tiles and checkpoint, and apply its unit of work.

        The unit (the index rows the followed indexer derives from the batch's
        entries, and its small blobs) is planned before the transaction, as
        data, and applied inside it (:meth:`commit`).

        Raises:
            StorageError: the write failed, or a blob no effect of the batch
                records; nothing is stored.
        """
        self.commit(batch, plan_unit(batch, self._indexer))

    def commit(self, batch: Batch, unit: UnitOfWork | None) -> None:
        """Write ``batch`` and apply ``unit`` in one durable transaction, or neither.

        Each table gets one multi-row statement (a few hundred rows at most per
        statement): every SQLite call gives up the GIL and must win it back, so
        a batch makes a handful of calls, not one per row. When the index is
        behind the batch's start (another writer, or an older database) the
        stored entries before it are indexed first, in the same transaction.

        Raises:
            StorageError: the write failed; nothing is stored.
        """
        versions: dict[int, int] = {}
        growth = (batch.start, batch.start + len(batch.entries))
        with self._db.tx(growth) as db:
            ((head,),) = db.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM log_entries")
            if head != batch.start:  # another writer of this file went first: nothing written
                raise LogHeadMovedError(
                    f"the log's head is `{head}`, not `{batch.start}` where this batch starts"
                )
            insert_rows(db, "INSERT INTO log_entries (idx, leaf_hash, payload)", batch.entries, 3)
            insert_rows(db, "INSERT INTO log_tiles (id, hashes)", batch.tiles, 2)
            checkpoint = batch.signed_checkpoint()  # the head is held: sign now (INV-5)
            if checkpoint is not None:
                db.execute("INSERT INTO log_checkpoints (size, note) VALUES (?, ?)", checkpoint)
            if unit is not None:
                if self._indexed_to != batch.start and indexed_to(db) != batch.start:
                    if self._indexer is None:
                        raise StorageError("the persistence index is behind the log; no indexer")
                    self._indexed_to = None
                    catch_up(db, self._indexer, until=batch.start)
                versions = apply_unit(db, unit)
        if unit is not None:  # only after COMMIT: a rolled-back batch changes nothing
            self._indexed_to = unit.indexed_to
            if versions and self._on_versions is not None:
                self._on_versions(versions)

    def read_entries_containing(
        self, start: int, end: int, needles: Sequence[bytes]
    ) -> list[tuple[int, bytes, bytes]]:
        """Entries ``[start, end)`` whose payload contains one of ``needles`` (SQLite scans)."""
        if not needles:
            return []
        where = " OR ".join(["instr(payload, ?) > 0"] * len(needles))
        rows = self._query(
            "SELECT idx, leaf_hash, payload FROM log_entries"  # noqa: S608 — placeholders only
            f" WHERE idx >= ? AND idx < ? AND ({where}) ORDER BY idx",
            (start, end, *needles),
        )
        return [(_int(r[0]), _blob(r[1]), _blob(r[2])) for r in rows]

    def read_entries(self, start: int, end: int) -> list[tuple[int, bytes, bytes]]:
        """Return entries ``[start, end)`` as ``(index, leaf hash, payload)``.

        On the reader connection, as :meth:`read_tiles` is: committed rows, never a wait
        for the writer (a batch's entries are read only after it committed).
        """
        rows = self._db.read_query(
            "SELECT idx, leaf_hash, payload FROM log_entries"
            " WHERE idx >= ? AND idx < ? ORDER BY idx",
            (start, end),
        )
        return [(_int(r[0]), _blob(r[1]), _blob(r[2])) for r in rows]

    def checkpoint_sizes(self, after: int, limit: int) -> list[int]:
        """The sizes of the stored checkpoints larger than ``after``, ascending, at most ``limit``
        (on the reader connection)."""
        return [
            _int(r[0])
            for r in self._db.read_query(
                "SELECT size FROM log_checkpoints WHERE size > ? ORDER BY size LIMIT ?",
                (after, limit),
            )
        ]

    def read_checkpoints(self, low: int, high: int) -> list[tuple[int, str]]:
        """The stored checkpoints of sizes in ``[low, high]`` as ``(size, note)``, ascending."""
        return [
            (_int(r[0]), _text(r[1]))
            for r in self._db.read_query(
                "SELECT size, note FROM log_checkpoints"
                " WHERE size >= ? AND size <= ? ORDER BY size",
                (low, high),
            )
        ]


class SQLiteLogReader:
    """A read-only view of a database's log tables: streamed for a full audit, or, as a
    ``LogStore`` that refuses every write, the tail and entries an opened log reads."""

    def __init__(self, path: Path) -> None:
        """Open ``path`` read-only (:func:`read_only_uri`: nothing in its directory changes).

        Args:
            path: The SQLite database file.

        Raises:
            StorageError: the file is missing or is not a SOP database.
        """
        if not path.is_file():
            raise StorageError(f"no database at `{path}`")
        try:
            self._db = sqlite3.connect(  # one user at a time, from any thread (the NATS child's
                read_only_uri(path), uri=True, isolation_level=None, check_same_thread=False
            )  # sink and reporter share it under a lock)
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

    # ---- the LogStore of a read-only TransparencyLog --------------------------------------
    def log_tail(self) -> tuple[int, str | None]:
        """Return the entry count and the latest checkpoint note, read in one snapshot."""

        def tail(db: sqlite3.Connection) -> tuple[int, str | None]:
            db.execute("BEGIN")  # one read transaction: a writer's commit cannot split the two
            try:
                ((size,),) = db.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM log_entries")
                rows = db.execute(
                    "SELECT note FROM log_checkpoints ORDER BY size DESC LIMIT 1"
                ).fetchall()
            finally:
                db.execute("COMMIT")
            return int(size), str(rows[0][0]) if rows else None

        return self._query(tail)

    def read_entries(self, start: int, end: int) -> list[tuple[int, bytes, bytes]]:
        """Return entries ``[start, end)`` as ``(index, leaf hash, payload)``."""
        rows = self._query(
            lambda db: db.execute(
                "SELECT idx, leaf_hash, payload FROM log_entries"
                " WHERE idx >= ? AND idx < ? ORDER BY idx",
                (start, end),
            ).fetchall()
        )
        return [(_int(r[0]), _blob(r[1]), _blob(r[2])) for r in rows]

    def checkpoint_sizes(self, after: int, limit: int) -> list[int]:
        """The sizes of the stored checkpoints past ``after``, ascending, at most ``limit``."""
        rows = self._query(
            lambda db: db.execute(
                "SELECT size FROM log_checkpoints WHERE size > ? ORDER BY size LIMIT ?",
                (after, limit),
            ).fetchall()
        )
        return [_int(r[0]) for r in rows]

    def read_checkpoints(self, low: int, high: int) -> list[tuple[int, str]]:
        """The stored checkpoints of sizes in ``[low, high]`` as ``(size, note)``, ascending."""
        rows = self._query(
            lambda db: db.execute(
                "SELECT size, note FROM log_checkpoints"
                " WHERE size >= ? AND size <= ? ORDER BY size",
                (low, high),
            ).fetchall()
        )
        return [(_int(r[0]), _text(r[1])) for r in rows]

    def read_entries_containing(
        self, start: int, end: int, needles: Sequence[bytes]
    ) -> list[tuple[int, bytes, bytes]]:
        """Entries ``[start, end)`` whose payload holds one of ``needles`` (read, then filtered)."""
        return [r for r in self.read_entries(start, end) if any(n in r[2] for n in needles)]

    def write_batch(self, batch: Batch) -> None:
        """Refuse: this view is read-only.

        Raises:
            StorageError: always.
        """
        raise StorageError("the log is opened read-only; nothing is appended through this view")


def _int(value: object) -> int:
    """A stored integer; a tampered non-integer reads as -1, which no check accepts."""
    return value if type(value) is int else -1


def _text(value: object) -> str:
    """A stored note; a tampered non-text reads as empty, which no check accepts."""
    return value if isinstance(value, str) else ""


def _blob(value: object) -> bytes:
    """A stored blob; tampered text reads as its UTF-8 bytes, anything else as empty."""
    if isinstance(value, bytes):
        return value
    return value.encode("utf-8", "replace") if isinstance(value, str) else b""
