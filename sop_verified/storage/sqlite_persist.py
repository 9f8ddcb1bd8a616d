"""The persistence index in SQLite: pending decisions, effects, objects, tombstones, purges.

:func:`apply_unit` applies a batch's
:class:`~sop_verified.storage.unit_of_work.UnitOfWork` inside the transaction
that writes the batch's log entries (:class:`~sop_verified.storage.sqlite_log.SQLiteLog`),
so the index is always exactly a function of the log prefix ``[0, indexed_to)``.
Effects and tombstones are insert-only (triggers abort UPDATE and DELETE);
``pending`` and ``purge`` are work queues, emptied as their work is logged or
done. :class:`SQLitePersistIndex` answers the controller's queries.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from sop_verified.errors import StorageError
from sop_verified.storage.persist_index import (
    EntryIndexer,
    IndexOps,
    ObjectRecord,
    PendingDecision,
    PurgeRecord,
    check_closed,
    number_versions,
)
from sop_verified.storage.sqlite_blobs import SQLiteBlobs, store_blobs
from sop_verified.storage.sqlite_db import SQLiteDB, insert_rows
from sop_verified.storage.unit_of_work import UnitOfWork

__all__ = [
    "PERSIST_SCHEMA",
    "SQLitePersistIndex",
    "apply_ops",
    "apply_unit",
    "catch_up",
    "indexed_to",
    "set_indexed_to",
]

PERSIST_SCHEMA = """
CREATE TABLE IF NOT EXISTS persist_state (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS persist_pending (
    decision_index INTEGER PRIMARY KEY,
    request BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS persist_effects (
    effect_index INTEGER PRIMARY KEY,
    decision_index INTEGER,
    outcome TEXT NOT NULL,
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    stored TEXT NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    time INTEGER NOT NULL,
    version INTEGER
);
CREATE INDEX IF NOT EXISTS persist_effects_by_name
    ON persist_effects (scope, name, effect_index) WHERE outcome = 'written';
CREATE INDEX IF NOT EXISTS persist_effects_by_stored
    ON persist_effects (scope, stored) WHERE outcome = 'written';
CREATE TABLE IF NOT EXISTS persist_tombstones (
    effect_index INTEGER PRIMARY KEY,
    tombstone_index INTEGER NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS persist_purge (
    tombstone_index INTEGER PRIMARY KEY,
    scope TEXT NOT NULL,
    stored TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS persist_versions (
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    latest INTEGER NOT NULL,
    PRIMARY KEY (scope, name)
);
""" + "".join(
    f"CREATE TRIGGER IF NOT EXISTS {t}_no_{op} BEFORE {op.upper()} ON {t}\n"
    f"BEGIN SELECT RAISE(ABORT, 'persistence records are insert-only'); END;\n"
    for t in ("persist_effects", "persist_tombstones")
    for op in ("update", "delete")
)
"""DDL of the index tables; effects and tombstones are insert-only."""

_LIVE = (
    "outcome = 'written' AND NOT EXISTS "
    "(SELECT 1 FROM persist_tombstones t WHERE t.effect_index = e.effect_index)"
)
_OBJECT_COLUMNS = (
    "e.effect_index, e.decision_index, e.scope, e.name, e.version, e.stored, e.digest, e.size, "
    "e.time"
)

_RECENT_VERSIONS = 4096


def indexed_to(db: sqlite3.Connection) -> int:
    """The log size the index reflects (0 before anything was indexed)."""
    row = db.execute("SELECT value FROM persist_state WHERE key = 'indexed_to'").fetchone()
    return 0 if row is None else int(row[0])


def set_indexed_to(db: sqlite3.Connection, size: int) -> None:
    """Record that the index reflects the log prefix ``[0, size)``."""
    db.execute(
        "INSERT INTO persist_state (key, value) VALUES ('indexed_to', ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (size,),
    )


def _latest_versions(
    db: sqlite3.Connection, names: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for at in range(0, len(names), 400):
        chunk = names[at : at + 400]
        marks = ",".join(["(?, ?)"] * len(chunk))
        rows = db.execute(
            "SELECT scope, name, latest FROM persist_versions"  # noqa: S608 - placeholders only
            f" WHERE (scope, name) IN (VALUES {marks})",
            [v for pair in chunk for v in pair],
        ).fetchall()
        out.update(((str(r[0]), str(r[1])), int(r[2])) for r in rows)
    return out


def apply_ops(db: sqlite3.Connection, ops: IndexOps, *, live: bool = False) -> dict[int, int]:
    """Apply one batch's index changes inside the caller's transaction.

    A handful of statements per batch, not a few per entry (each SQLite call
    gives up the GIL): new pending rows, the pending rows the effects close,
    the effects with their version numbers (the latest per name is kept in
    ``persist_versions``, so numbering does not grow with history), then
    tombstones.

    Args:
        db: the batch's transaction.
        ops: what the batch's entries change.
        live: a batch being written now (not entries indexed late): each pending
            row it closes must still be there.

    Returns:
        The version given to each ``written`` effect, by effect index.

    Raises:
        PendingClosedError: ``live`` and a decision the batch closes is not pending.
    """
    if ops.pending:
        insert_rows(
            db,
            "INSERT INTO persist_pending (decision_index, request)",
            [(p.decision_index, p.request) for p in ops.pending],
            2,
        )
    closing = ops.closed()
    deleted = 0
    for at in range(0, len(closing), 500):
        chunk = closing[at : at + 500]
        deleted += db.execute(
            "DELETE FROM persist_pending"  # noqa: S608 - placeholders only
            f" WHERE decision_index IN ({','.join('?' * len(chunk))})",
            chunk,
        ).rowcount
    if live:
        check_closed(closing, deleted)
    versions: dict[int, int] = {}
    if ops.effects:
        names = sorted({(e.scope, e.name) for e in ops.effects if e.outcome == "written"})
        latest = _latest_versions(db, names) if names else {}
        numbered = number_versions(ops.effects, latest)
        rows = [(*e.row(), v) for e, v in zip(ops.effects, numbered, strict=True)]
        versions = {
            e.effect_index: v for e, v in zip(ops.effects, numbered, strict=True) if v is not None
        }
        insert_rows(
            db,
            "INSERT INTO persist_effects (effect_index, decision_index, outcome, scope,"
            " name, stored, digest, size, time, version)",
            rows,
            10,
        )
        if names:
            insert_rows(
                db,
                "INSERT INTO persist_versions (scope, name, latest)",
                [(scope, name, latest[(scope, name)]) for scope, name in names],
                3,
                " ON CONFLICT (scope, name) DO UPDATE SET latest = excluded.latest",
            )
    for t in ops.tombstones:
        row = db.execute(
            "SELECT scope, stored FROM persist_effects"
            " WHERE effect_index = ? AND outcome = 'written'",
            (t.effect_index,),
        ).fetchone()
        if row is None:
            continue  # nothing was written there: nothing to delete
        db.execute(
            "INSERT OR IGNORE INTO persist_tombstones (effect_index, tombstone_index)"
            " VALUES (?, ?)",
            (t.effect_index, t.tombstone_index),
        )
        db.execute(
            "INSERT INTO persist_purge (tombstone_index, scope, stored) VALUES (?, ?, ?)",
            (t.tombstone_index, row[0], row[1]),
        )
    return versions


def apply_unit(db: sqlite3.Connection, unit: UnitOfWork) -> dict[int, int]:
    """Apply a unit of work inside the transaction of the batch it belongs to.

    Returns:
        The version given to each ``written`` effect, by effect index.
    """
    versions = apply_ops(db, unit.index, live=True) if unit.index else {}
    set_indexed_to(db, unit.indexed_to)
    if unit.blobs:
        store_blobs(db, unit.blobs)
    return versions


_CATCH_UP_CHUNK = 10_000


def catch_up(db: sqlite3.Connection, indexer: EntryIndexer, until: int | None = None) -> None:
    """Index the stored entries not indexed yet, up to ``until`` (inside ``db``'s transaction).

    Raises:
        StorageError: the index is ahead of ``until`` (the log lost entries it indexed).
    """
    start = indexed_to(db)
    if until is not None and start > until:
        raise StorageError(f"the persistence index is at `{start}`, past the log's `{until}`")
    while until is None or start < until:
        limit = _CATCH_UP_CHUNK if until is None else min(_CATCH_UP_CHUNK, until - start)
        rows = db.execute(
            "SELECT idx, payload FROM log_entries WHERE idx >= ? ORDER BY idx LIMIT ?",
            (start, limit),
        ).fetchall()
        if not rows:
            return
        ops = indexer([(int(r[0]), bytes(r[1])) for r in rows])
        if ops:
            apply_ops(db, ops)
        start = int(rows[-1][0]) + 1
        set_indexed_to(db, start)


class SQLitePersistIndex:
    """Queries of the persistence index of one database (a ``PersistIndex``)."""

    def __init__(self, db: SQLiteDB, blobs: SQLiteBlobs) -> None:
        """Use ``db``'s connections (its schema holds :data:`PERSIST_SCHEMA`).

        Args:
            db: The database.
            blobs: The small blobs the index answers for.
        """
        self._db = db
        self._query = db.read_query
        self._blobs = blobs
        self._recent: dict[int, int] = {}

    def blob(self, scope: str, stored: str) -> bytes | None:
        """The bytes kept in the database for ``stored`` in ``scope`` (small blobs), or None."""
        return self._blobs.blob(scope, stored)

    def drop_blob(self, scope: str, stored: str) -> bool:
        """Delete the database copy of ``stored`` unless a live object uses it."""
        return self._blobs.drop_blob(scope, stored)

    def indexed_to(self) -> int:
        """The log size the index reflects."""
        rows = self._query("SELECT value FROM persist_state WHERE key = 'indexed_to'", ())
        return 0 if not rows else int(rows[0][0])

    def note_versions(self, versions: dict[int, int]) -> None:
        """Remember the versions a committed batch gave its written effects (a bounded memo)."""
        recent = self._recent
        recent.update(versions)
        while len(recent) > _RECENT_VERSIONS:
            del recent[next(iter(recent))]

    def written_version(self, effect_index: int) -> int | None:
        """The version the effect entry ``effect_index`` wrote, if it wrote a live object.

        Answered from memory for a batch committed moments ago (the caller that
        appended the effect asks once), else from the database.
        """
        version = self._recent.pop(effect_index, None)
        if version is not None:
            return version
        record = self.object_at(effect_index)
        return None if record is None else record.version

    def pending(self) -> list[PendingDecision]:
        """Every ALLOW persist decision still awaiting its effect, in log order."""
        rows = self._query(
            "SELECT decision_index, request FROM persist_pending ORDER BY decision_index", ()
        )
        return [PendingDecision(int(r[0]), bytes(r[1])) for r in rows]

    def repairable(self) -> list[PendingDecision]:
        """Every pending decision: this store has one writer, so boot repair closes them all."""
        return self.pending()

    def pending_decision(self, decision_index: int) -> PendingDecision | None:
        """The pending decision at ``decision_index``, or None (absent or already resolved)."""
        rows = self._query(
            "SELECT decision_index, request FROM persist_pending WHERE decision_index = ?",
            (decision_index,),
        )
        return PendingDecision(int(rows[0][0]), bytes(rows[0][1])) if rows else None

    def latest(self, scope: str, name: str) -> ObjectRecord | None:
        """The newest live object named ``name`` in ``scope``."""
        rows = self._query(
            f"SELECT {_OBJECT_COLUMNS} FROM persist_effects e"  # noqa: S608 - constant fragments
            f" WHERE e.scope = ? AND e.name = ? AND {_LIVE} ORDER BY e.effect_index DESC LIMIT 1",
            (scope, name),
        )
        return ObjectRecord.from_row(rows[0]) if rows else None

    def version(self, scope: str, name: str, version: int) -> ObjectRecord | None:
        """Live version ``version`` of ``name`` in ``scope``."""
        rows = self._query(
            f"SELECT {_OBJECT_COLUMNS} FROM persist_effects e"  # noqa: S608 - constant fragments
            f" WHERE e.scope = ? AND e.name = ? AND e.version = ? AND {_LIVE}",
            (scope, name, version),
        )
        return ObjectRecord.from_row(rows[0]) if rows else None

    def by_stored(self, scope: str, stored: str) -> ObjectRecord | None:
        """A live object stored at ``stored`` in ``scope`` (content-addressed blobs are shared)."""
        rows = self._query(
            f"SELECT {_OBJECT_COLUMNS} FROM persist_effects e"  # noqa: S608 - constant fragments
            f" WHERE e.scope = ? AND e.stored = ? AND {_LIVE} ORDER BY e.effect_index LIMIT 1",
            (scope, stored),
        )
        return ObjectRecord.from_row(rows[0]) if rows else None

    def object_at(self, effect_index: int) -> ObjectRecord | None:
        """The live object written by the effect entry ``effect_index``."""
        rows = self._query(
            f"SELECT {_OBJECT_COLUMNS} FROM persist_effects e"  # noqa: S608 - constant fragments
            f" WHERE e.effect_index = ? AND {_LIVE}",
            (effect_index,),
        )
        return ObjectRecord.from_row(rows[0]) if rows else None

    def objects(self, scope: str, name: str | None = None) -> list[ObjectRecord]:
        """Live objects of ``scope`` (of one name if given), by name, newest first."""
        where, params = (
            ("e.scope = ?", [scope])
            if name is None
            else (
                "e.scope = ? AND e.name = ?",
                [scope, name],
            )
        )
        rows = self._query(
            f"SELECT {_OBJECT_COLUMNS} FROM persist_effects e"  # noqa: S608 - constant fragments
            f" WHERE {where} AND {_LIVE} ORDER BY e.name, e.effect_index DESC",
            params,
        )
        return [ObjectRecord.from_row(r) for r in rows]

    def purges(self) -> list[PurgeRecord]:
        """Files whose tombstones are logged and that are not removed yet."""
        rows = self._query(
            "SELECT tombstone_index, scope, stored FROM persist_purge ORDER BY tombstone_index", ()
        )
        return [PurgeRecord(int(r[0]), str(r[1]), str(r[2])) for r in rows]

    def purged(self, tombstone_index: int) -> None:
        """The file of ``tombstone_index`` is gone (or still used): drop it from the queue."""
        with self._db.tx() as db:
            db.execute("DELETE FROM persist_purge WHERE tombstone_index = ?", (tombstone_index,))
