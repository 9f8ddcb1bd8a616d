"""The persistence index in SQLite: pending decisions, effects, objects, tombstones, purges.

:func:`apply_ops` runs inside the transaction that writes a batch of log
entries (see :meth:`SQLiteStore.set_entry_indexer`), so the index is always
exactly a function of the log prefix ``[0, indexed_to)``. Effects and
tombstones are insert-only (triggers abort UPDATE and DELETE); ``pending``
and ``purge`` are work queues, emptied as their work is logged or done.
:class:`SQLitePersistIndex` answers the controller's queries.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from sop_verified.storage.persist_index import (
    EffectRecord,
    IndexOps,
    ObjectRecord,
    PendingDecision,
    PurgeRecord,
)
from sop_verified.storage.sqlite_log import insert_rows

__all__ = [
    "INLINE_SCHEMA",
    "PERSIST_SCHEMA",
    "SQLitePersistIndex",
    "apply_ops",
    "fill_versions",
    "indexed_to",
    "migrate_blobs",
    "set_indexed_to",
    "store_blobs",
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

INLINE_SCHEMA = """
CREATE TABLE IF NOT EXISTS persist_inline (
    effect_index INTEGER PRIMARY KEY,
    data BLOB NOT NULL
);
CREATE VIEW IF NOT EXISTS persist_inline_in (effect_index, scope, stored, data) AS
    SELECT NULL, NULL, NULL, NULL WHERE 0;
CREATE TRIGGER IF NOT EXISTS persist_inline_in_insert INSTEAD OF INSERT ON persist_inline_in
BEGIN
    UPDATE persist_inline SET data = NEW.data
        WHERE data IS NOT NEW.data AND effect_index IN (SELECT e.effect_index
            FROM persist_effects e WHERE e.scope = NEW.scope AND e.stored = NEW.stored
            AND e.outcome = 'written' AND e.effect_index <> NEW.effect_index);
    INSERT INTO persist_inline (effect_index, data) SELECT NEW.effect_index, NEW.data
        WHERE NOT EXISTS (SELECT 1 FROM persist_effects e JOIN persist_inline i
            ON i.effect_index = e.effect_index
            WHERE e.scope = NEW.scope AND e.stored = NEW.stored AND e.outcome = 'written');
END;
"""
"""DDL of the small-blob table and the view it is written through (after ``PERSIST_SCHEMA``).

Small content-addressed blobs (ADR 0007) are kept in ``persist_inline``, once
per ``(scope, stored)``, under the index of the effect that first stored them
(ADR 0009): an integer key that grows with the log, so storing a blob appends
to the table's B-tree instead of inserting into an index at a random digest
(which cost a 4 KiB page in the WAL, and again at the checkpoint, per write).
They are found through ``persist_effects_by_stored``. A blob is stored through
the view ``persist_inline_in``: if a written effect already holds the same
``(scope, stored)``, its row gets these bytes (equal, by the digest in the key,
so this only ever repairs a tampered row) and no row is added; otherwise a row
is added under this effect's index.
"""

_LIVE = (
    "outcome = 'written' AND NOT EXISTS "
    "(SELECT 1 FROM persist_tombstones t WHERE t.effect_index = e.effect_index)"
)
_OBJECT_COLUMNS = (
    "e.effect_index, e.decision_index, e.scope, e.name, e.version, e.stored, e.digest, e.size, "
    "e.time"
)

_RECENT_VERSIONS = 4096

Tx = Callable[[], AbstractContextManager[sqlite3.Connection]]
Query = Callable[[str, Sequence[object]], list[Any]]


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


def fill_versions(db: sqlite3.Connection) -> None:
    """Fill ``persist_versions`` from the effects of a database indexed before it existed."""
    if db.execute("SELECT 1 FROM persist_versions LIMIT 1").fetchone() is not None:
        return
    db.execute(
        "INSERT INTO persist_versions (scope, name, latest) SELECT scope, name, MAX(version)"
        " FROM persist_effects WHERE outcome = 'written' GROUP BY scope, name"
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


def apply_ops(db: sqlite3.Connection, ops: IndexOps) -> dict[int, int]:
    """Apply one batch's index changes inside the caller's transaction.

    A handful of statements per batch, not a few per entry (each SQLite call
    gives up the GIL): new pending rows, the pending rows the effects close,
    the effects with their version numbers (the latest per name is kept in
    ``persist_versions``, so numbering does not grow with history), then
    tombstones.

    Returns:
        The version given to each ``written`` effect, by effect index.
    """
    if ops.pending:
        insert_rows(
            db,
            "INSERT OR IGNORE INTO persist_pending (decision_index, request)",
            [(p.decision_index, p.request) for p in ops.pending],
            2,
        )
    closing = ops.closed()
    for at in range(0, len(closing), 500):
        chunk = closing[at : at + 500]
        db.execute(
            "DELETE FROM persist_pending"  # noqa: S608 - placeholders only
            f" WHERE decision_index IN ({','.join('?' * len(chunk))})",
            chunk,
        )
    versions: dict[int, int] = {}
    if ops.effects:
        names = sorted({(e.scope, e.name) for e in ops.effects if e.outcome == "written"})
        latest = _latest_versions(db, names) if names else {}
        rows = []
        for e in ops.effects:
            version = None
            if e.outcome == "written":
                version = latest.get((e.scope, e.name), 0) + 1
                latest[(e.scope, e.name)] = versions[e.effect_index] = version
            rows.append((*_effect_row(e), version))
        insert_rows(
            db,
            "INSERT OR IGNORE INTO persist_effects (effect_index, decision_index, outcome, scope,"
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
            "INSERT OR IGNORE INTO persist_purge (tombstone_index, scope, stored) VALUES (?, ?, ?)",
            (t.tombstone_index, row[0], row[1]),
        )
    return versions


def store_blobs(db: sqlite3.Connection, blobs: Sequence[tuple[int, str, str, bytes]]) -> None:
    """Keep small blobs, ``(effect index, scope, stored, bytes)``, once per ``(scope, stored)``.

    Runs inside the batch's transaction, after its effects were indexed (the
    view's trigger looks for an effect that already holds the same blob).
    """
    insert_rows(db, "INSERT INTO persist_inline_in (effect_index, scope, stored, data)", blobs, 4)


def migrate_blobs(db: sqlite3.Connection) -> None:
    """Move blobs from the ``persist_blobs`` table of earlier versions (inside a transaction).

    Each ``(scope, stored)`` row goes under the first written effect that
    stored it; a row no indexed effect refers to was never readable and is
    dropped with the old table.
    """
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'persist_blobs'").fetchone() is None:
        return
    db.execute(
        "INSERT OR IGNORE INTO persist_inline (effect_index, data)"
        " SELECT MIN(e.effect_index), b.data FROM persist_blobs b JOIN persist_effects e"
        " ON e.scope = b.scope AND e.stored = b.stored AND e.outcome = 'written'"
        " GROUP BY b.scope, b.stored"
    )
    db.execute("DROP TABLE persist_blobs")


def _effect_row(e: EffectRecord) -> tuple[object, ...]:
    return (
        e.effect_index,
        e.decision_index,
        e.outcome,
        e.scope,
        e.name,
        e.stored,
        e.digest,
        e.size,
        e.time,
    )


def _object(row: Sequence[Any]) -> ObjectRecord:
    return ObjectRecord(
        effect_index=int(row[0]),
        decision_index=None if row[1] is None else int(row[1]),
        scope=str(row[2]),
        name=str(row[3]),
        version=int(row[4]),
        stored=str(row[5]),
        digest=str(row[6]),
        size=int(row[7]),
        created_at=int(row[8]),
    )


class SQLitePersistIndex:
    """Queries of the persistence index (the store's connection and lock)."""

    def __init__(self, tx: Tx, query: Query) -> None:
        """Use the owning store's transaction and query helpers.

        Args:
            tx: Opens a write transaction that commits on exit (raises StorageError).
            query: Runs one read statement and returns its rows (raises StorageError).
        """
        self._tx = tx
        self._query = query
        self._recent: dict[int, int] = {}

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

    def blob(self, scope: str, stored: str) -> bytes | None:
        """The bytes kept in the database for ``stored`` in ``scope`` (small blobs), or None."""
        rows = self._query(
            "SELECT i.data FROM persist_effects e JOIN persist_inline i"
            " ON i.effect_index = e.effect_index"
            " WHERE e.scope = ? AND e.stored = ? AND e.outcome = 'written' LIMIT 1",
            (scope, stored),
        )
        if not rows:
            return None
        data = rows[0][0]
        return data if isinstance(data, bytes) else None

    def drop_blob(self, scope: str, stored: str) -> bool:
        """Delete the database copy of ``stored`` unless a live object uses it (one transaction).

        Returns:
            True when a row was deleted.
        """
        with self._tx() as db:
            cur = db.execute(
                "DELETE FROM persist_inline WHERE effect_index IN (SELECT e.effect_index"  # noqa: S608 - constant fragments
                " FROM persist_effects e WHERE e.scope = ? AND e.stored = ?"
                " AND e.outcome = 'written') AND NOT EXISTS (SELECT 1 FROM persist_effects e"
                f" WHERE e.scope = ? AND e.stored = ? AND {_LIVE})",
                (scope, stored, scope, stored),
            )
            return cur.rowcount > 0

    def pending(self) -> list[PendingDecision]:
        """Every ALLOW persist decision still awaiting its effect, in log order."""
        rows = self._query(
            "SELECT decision_index, request FROM persist_pending ORDER BY decision_index", ()
        )
        return [PendingDecision(int(r[0]), bytes(r[1])) for r in rows]

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
        return _object(rows[0]) if rows else None

    def version(self, scope: str, name: str, version: int) -> ObjectRecord | None:
        """Live version ``version`` of ``name`` in ``scope``."""
        rows = self._query(
            f"SELECT {_OBJECT_COLUMNS} FROM persist_effects e"  # noqa: S608 - constant fragments
            f" WHERE e.scope = ? AND e.name = ? AND e.version = ? AND {_LIVE}",
            (scope, name, version),
        )
        return _object(rows[0]) if rows else None

    def by_stored(self, scope: str, stored: str) -> ObjectRecord | None:
        """A live object stored at ``stored`` in ``scope`` (content-addressed blobs are shared)."""
        rows = self._query(
            f"SELECT {_OBJECT_COLUMNS} FROM persist_effects e"  # noqa: S608 - constant fragments
            f" WHERE e.scope = ? AND e.stored = ? AND {_LIVE} ORDER BY e.effect_index LIMIT 1",
            (scope, stored),
        )
        return _object(rows[0]) if rows else None

    def object_at(self, effect_index: int) -> ObjectRecord | None:
        """The live object written by the effect entry ``effect_index``."""
        rows = self._query(
            f"SELECT {_OBJECT_COLUMNS} FROM persist_effects e"  # noqa: S608 - constant fragments
            f" WHERE e.effect_index = ? AND {_LIVE}",
            (effect_index,),
        )
        return _object(rows[0]) if rows else None

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
        return [_object(r) for r in rows]

    def purges(self) -> list[PurgeRecord]:
        """Files whose tombstones are logged and that are not removed yet."""
        rows = self._query(
            "SELECT tombstone_index, scope, stored FROM persist_purge ORDER BY tombstone_index", ()
        )
        return [PurgeRecord(int(r[0]), str(r[1]), str(r[2])) for r in rows]

    def purged(self, tombstone_index: int) -> None:
        """The file of ``tombstone_index`` is gone (or still used): drop it from the queue."""
        with self._tx() as db:
            db.execute("DELETE FROM persist_purge WHERE tombstone_index = ?", (tombstone_index,))
