"""The persistence index in PostgreSQL: pending decisions, effects, objects, tombstones, purges.

The same tables and rules as SQLite (:mod:`sop_verified.storage.sqlite_persist`):
:func:`apply_unit` applies a batch's
:class:`~sop_verified.storage.unit_of_work.UnitOfWork` inside the transaction
that writes the batch's log entries (:class:`~sop_verified.storage.postgres_log.PostgresLog`),
so the index is always exactly a function of the log prefix ``[0, indexed_to)``.
Effects and tombstones are insert-only (triggers refuse UPDATE, DELETE and
TRUNCATE); ``pending`` and ``purge`` are work queues, emptied as their work
is logged or done. Each kind of row is written with one statement per batch
(arrays, ``unnest``). :class:`PostgresPersistIndex` answers the controller's queries.
"""

from __future__ import annotations

from collections.abc import Sequence

from sop_verified.errors import StorageError
from sop_verified.storage.persist_index import (
    EffectRecord,
    EntryIndexer,
    IndexOps,
    ObjectRecord,
    PendingDecision,
    PurgeRecord,
    check_closed,
    number_versions,
)
from sop_verified.storage.postgres_blobs import PostgresBlobs, store_blobs
from sop_verified.storage.postgres_db import Cursor, PostgresDB
from sop_verified.storage.postgres_owners import PendingOwners
from sop_verified.storage.unit_of_work import UnitOfWork

__all__ = [
    "PostgresPersistIndex",
    "apply_ops",
    "apply_unit",
    "catch_up",
    "indexed_to",
    "set_indexed_to",
]

_LIVE = (
    "outcome = 'written' AND NOT EXISTS "
    "(SELECT 1 FROM persist_tombstones t WHERE t.effect_index = e.effect_index)"
)
_OBJECT_COLUMNS = (
    "e.effect_index, e.decision_index, e.scope, e.name, e.version, e.stored, e.digest, e.size, "
    "e.time"
)
_EFFECT_TYPES = (
    "bigint",
    "bigint",
    "text",
    "text",
    "text",
    "text",
    "text",
    "bigint",
    "bigint",
    "bigint",
)

_RECENT_VERSIONS = 4096
_CATCH_UP_CHUNK = 10_000


def indexed_to(cur: Cursor) -> int:
    """The log size the index reflects (0 before anything was indexed)."""
    row = cur.execute("SELECT value FROM persist_state WHERE key = 'indexed_to'").fetchone()
    return 0 if row is None else int(row[0])


def set_indexed_to(cur: Cursor, size: int) -> None:
    """Record that the index reflects the log prefix ``[0, size)``."""
    cur.execute(
        "INSERT INTO persist_state (key, value) VALUES ('indexed_to', %s) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (size,),
    )


def _columns(rows: Sequence[Sequence[object]], width: int) -> list[list[object]]:
    """``rows`` as ``width`` column arrays (what ``unnest`` takes)."""
    return [[r[k] for r in rows] for k in range(width)]


def _latest_versions(cur: Cursor, names: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
    rows = cur.execute(
        "SELECT v.scope, v.name, v.latest FROM persist_versions v"
        " JOIN unnest(%s::text[], %s::text[]) AS k(scope, name) USING (scope, name)",
        _columns(names, 2),
    ).fetchall()
    return {(str(r[0]), str(r[1])): int(r[2]) for r in rows}


def _effects(cur: Cursor, effects: Sequence[EffectRecord]) -> dict[int, int]:
    """Insert ``effects`` with their version numbers; return each written one's version."""
    names = sorted({(e.scope, e.name) for e in effects if e.outcome == "written"})
    latest = _latest_versions(cur, names) if names else {}
    numbered = number_versions(effects, latest)
    rows = [(*e.row(), v) for e, v in zip(effects, numbered, strict=True)]
    arrays = ", ".join(f"%s::{t}[]" for t in _EFFECT_TYPES)
    cur.execute(
        "INSERT INTO persist_effects (effect_index, decision_index, outcome, scope,"  # noqa: S608 - constant fragments
        f" name, stored, digest, size, time, version) SELECT * FROM unnest({arrays})",
        _columns(rows, 10),
    )
    if names:
        cur.execute(
            "INSERT INTO persist_versions (scope, name, latest)"
            " SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[])"
            " ON CONFLICT (scope, name) DO UPDATE SET latest = excluded.latest",
            _columns([(s, n, latest[(s, n)]) for s, n in names], 3),
        )
    return {e.effect_index: v for e, v in zip(effects, numbered, strict=True) if v is not None}


def apply_ops(cur: Cursor, ops: IndexOps, *, owner: int = 0, live: bool = False) -> dict[int, int]:
    """Apply one batch's index changes inside the caller's transaction.

    New pending rows, the pending rows the effects close, the effects with
    their version numbers (the latest per name is kept in
    ``persist_versions``), then tombstones: one statement per kind, the
    tombstones (rare) one by one.

    Args:
        cur: the batch's transaction.
        ops: what the batch's entries change.
        owner: the replica that carries out the new pending decisions (its
            ``PendingOwners.owner``; 0: none alive, as for entries indexed late).
        live: a batch being written now (not entries indexed late): each pending
            row it closes must still be there.

    Returns:
        The version given to each ``written`` effect, by effect index.

    Raises:
        PendingClosedError: ``live`` and a decision the batch closes was closed
            already by another replica (the caller's transaction rolls back).
    """
    if ops.pending:
        cur.execute(
            "INSERT INTO persist_pending (decision_index, request, owner)"
            " SELECT d, r, %s FROM unnest(%s::bigint[], %s::bytea[]) AS u(d, r)",
            (owner, *_columns([(p.decision_index, p.request) for p in ops.pending], 2)),
        )
    closing = ops.closed()
    if closing:
        cur.execute("DELETE FROM persist_pending WHERE decision_index = ANY(%s)", (closing,))
        if live:
            check_closed(closing, cur.rowcount)
    versions = _effects(cur, ops.effects) if ops.effects else {}
    for t in ops.tombstones:
        row = cur.execute(
            "SELECT scope, stored FROM persist_effects"
            " WHERE effect_index = %s AND outcome = 'written'",
            (t.effect_index,),
        ).fetchone()
        if row is None:
            continue  # nothing was written there: nothing to delete
        cur.execute(
            "INSERT INTO persist_tombstones (effect_index, tombstone_index)"
            " VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (t.effect_index, t.tombstone_index),
        )
        cur.execute(
            "INSERT INTO persist_purge (tombstone_index, scope, stored) VALUES (%s, %s, %s)",
            (t.tombstone_index, row[0], row[1]),
        )
    return versions


def apply_unit(cur: Cursor, unit: UnitOfWork, owner: int = 0) -> dict[int, int]:
    """Apply a unit of work inside the transaction of the batch it belongs to.

    Args:
        cur: the batch's transaction.
        unit: the batch's index changes and blobs.
        owner: the writing replica's owner id (the new pending rows are its own).

    Returns:
        The version given to each ``written`` effect, by effect index.

    Raises:
        PendingClosedError: the batch closes a decision that is no longer pending.
    """
    versions = apply_ops(cur, unit.index, owner=owner, live=True) if unit.index else {}
    set_indexed_to(cur, unit.indexed_to)
    if unit.blobs:
        store_blobs(cur, unit.blobs)
    return versions


def catch_up(cur: Cursor, indexer: EntryIndexer, until: int | None = None) -> None:
    """Index the stored entries not indexed yet, up to ``until`` (inside ``cur``'s transaction).

    Raises:
        StorageError: the index is ahead of ``until`` (the log lost entries it indexed).
    """
    start = indexed_to(cur)
    if until is not None and start > until:
        raise StorageError(f"the persistence index is at `{start}`, past the log's `{until}`")
    while until is None or start < until:
        limit = _CATCH_UP_CHUNK if until is None else min(_CATCH_UP_CHUNK, until - start)
        rows = cur.execute(
            "SELECT idx, payload FROM log_entries WHERE idx >= %s ORDER BY idx LIMIT %s",
            (start, limit),
        ).fetchall()
        if not rows:
            return
        ops = indexer([(int(r[0]), bytes(r[1])) for r in rows])
        if ops:
            apply_ops(cur, ops)
        start = int(rows[-1][0]) + 1
        set_indexed_to(cur, start)


class PostgresPersistIndex:
    """Queries of the persistence index of one schema (a ``PersistIndex``)."""

    def __init__(
        self, db: PostgresDB, blobs: PostgresBlobs, owners: PendingOwners | None = None
    ) -> None:
        """Use ``db``'s pool.

        Args:
            db: The schema's connections.
            blobs: The small blobs the index answers for.
            owners: Which replicas carry out which pending rows (None: every
                pending row is boot repair's).
        """
        self._db = db
        self._owners = owners
        self._query = db.query
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
        rows = self._query("SELECT value FROM persist_state WHERE key = 'indexed_to'")
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
            "SELECT decision_index, request FROM persist_pending ORDER BY decision_index"
        )
        return [PendingDecision(int(r[0]), bytes(r[1])) for r in rows]

    def repairable(self) -> list[PendingDecision]:
        """The pending decisions boot repair may close: no live replica carries them out.

        Those of owners whose lock this replica takes (their process is gone;
        the claim is kept until the backend closes), in log order.

        Raises:
            StorageError: PostgreSQL is not answering.
        """
        rows = self._query(
            "SELECT decision_index, request, owner FROM persist_pending ORDER BY decision_index"
        )
        if self._owners is None:
            return [PendingDecision(int(r[0]), bytes(r[1])) for r in rows]
        mine = self._owners.claim({int(r[2]) for r in rows})
        return [PendingDecision(int(r[0]), bytes(r[1])) for r in rows if int(r[2]) in mine]

    def pending_decision(self, decision_index: int) -> PendingDecision | None:
        """The pending decision at ``decision_index``, or None (absent or already resolved)."""
        rows = self._query(
            "SELECT decision_index, request FROM persist_pending WHERE decision_index = %s",
            (decision_index,),
        )
        return PendingDecision(int(rows[0][0]), bytes(rows[0][1])) if rows else None

    def latest(self, scope: str, name: str) -> ObjectRecord | None:
        """The newest live object named ``name`` in ``scope``."""
        rows = self._query(
            f"SELECT {_OBJECT_COLUMNS} FROM persist_effects e"  # noqa: S608 - constant fragments
            f" WHERE e.scope = %s AND e.name = %s AND {_LIVE} ORDER BY e.effect_index DESC LIMIT 1",
            (scope, name),
        )
        return ObjectRecord.from_row(rows[0]) if rows else None

    def version(self, scope: str, name: str, version: int) -> ObjectRecord | None:
        """Live version ``version`` of ``name`` in ``scope``."""
        rows = self._query(
            f"SELECT {_OBJECT_COLUMNS} FROM persist_effects e"  # noqa: S608 - constant fragments
            f" WHERE e.scope = %s AND e.name = %s AND e.version = %s AND {_LIVE}",
            (scope, name, version),
        )
        return ObjectRecord.from_row(rows[0]) if rows else None

    def by_stored(self, scope: str, stored: str) -> ObjectRecord | None:
        """A live object stored at ``stored`` in ``scope`` (content-addressed blobs are shared)."""
        rows = self._query(
            f"SELECT {_OBJECT_COLUMNS} FROM persist_effects e"  # noqa: S608 - constant fragments
            f" WHERE e.scope = %s AND e.stored = %s AND {_LIVE} ORDER BY e.effect_index LIMIT 1",
            (scope, stored),
        )
        return ObjectRecord.from_row(rows[0]) if rows else None

    def object_at(self, effect_index: int) -> ObjectRecord | None:
        """The live object written by the effect entry ``effect_index``."""
        rows = self._query(
            f"SELECT {_OBJECT_COLUMNS} FROM persist_effects e"  # noqa: S608 - constant fragments
            f" WHERE e.effect_index = %s AND {_LIVE}",
            (effect_index,),
        )
        return ObjectRecord.from_row(rows[0]) if rows else None

    def objects(self, scope: str, name: str | None = None) -> list[ObjectRecord]:
        """Live objects of ``scope`` (of one name if given), by name, newest first."""
        where, params = (
            ("e.scope = %s", [scope])
            if name is None
            else ("e.scope = %s AND e.name = %s", [scope, name])
        )
        rows = self._query(
            f"SELECT {_OBJECT_COLUMNS} FROM persist_effects e"  # noqa: S608 - constant fragments
            f' WHERE {where} AND {_LIVE} ORDER BY e.name COLLATE "C", e.effect_index DESC',
            params,
        )
        return [ObjectRecord.from_row(r) for r in rows]

    def purges(self) -> list[PurgeRecord]:
        """Files whose tombstones are logged and that are not removed yet."""
        rows = self._query(
            "SELECT tombstone_index, scope, stored FROM persist_purge ORDER BY tombstone_index"
        )
        return [PurgeRecord(int(r[0]), str(r[1]), str(r[2])) for r in rows]

    def purged(self, tombstone_index: int) -> None:
        """The file of ``tombstone_index`` is gone (or still used): drop it from the queue."""
        with self._db.tx() as cur:
            cur.execute("DELETE FROM persist_purge WHERE tombstone_index = %s", (tombstone_index,))
