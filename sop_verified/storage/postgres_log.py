"""The log's tables in PostgreSQL: the head row, entries, tiles, signed checkpoints.

:class:`PostgresLog` is the :class:`~sop_verified.tools.tlog_store.LogStore` of
:class:`~sop_verified.storage.postgres.PostgresBackend`. The
:class:`~sop_verified.tools.tlog.TransparencyLog` above it batches appends
(group commit: one leader writes every queued entry); each batch is ONE short
transaction that first locks the single head row ``FOR UPDATE``. If another
replica moved the head, the batch is rebuilt on it while the lock is held
(``Batch.rebuild``, ADR 0017); the checkpoint is signed only then. The
entries, tiles and checkpoint are written and the head moved in one
statement, and the batch's unit of work (persistence index rows, small blobs)
applied. Contiguous, gap-free indexes for the whole batch, never one locked
transaction per entry. All three tables are
insert-only: triggers refuse UPDATE, DELETE and TRUNCATE (INV-5).
:class:`PostgresLogReader` streams the tables for a full audit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, suppress
from typing import Any

import psycopg

from sop_verified.errors import StorageError
from sop_verified.storage.persist_index import EntryIndexer
from sop_verified.storage.postgres_db import Cursor, PostgresDB
from sop_verified.storage.postgres_persist import apply_unit, catch_up, indexed_to
from sop_verified.storage.unit_of_work import UnitOfWork, plan_unit
from sop_verified.tools.tlog_store import Batch

__all__ = ["PostgresLog", "PostgresLogReader", "lock_head"]

_TAIL = (
    "SELECT h.size, (SELECT note FROM log_checkpoints ORDER BY size DESC LIMIT 1)"
    " FROM log_head h WHERE h.id = 1"
)


def lock_head(cur: Cursor) -> int:
    """Lock the head row for this transaction and return the log's size there.

    Raises:
        StorageError: the head row is missing.
    """
    row = cur.execute("SELECT size FROM log_head WHERE id = 1 FOR UPDATE").fetchone()
    if row is None:
        raise StorageError("the log's head row is missing: the schema was tampered with")
    return int(row[0])


def _append(batch: Batch, checkpoint: tuple[int, str] | None, end: int) -> tuple[str, list[object]]:
    """ONE statement that writes the batch's entries, tiles and checkpoint and moves the head.

    Each table's rows go in one insert (arrays, ``unnest``), each insert a
    data-modifying ``WITH`` query of the head's ``UPDATE``: PostgreSQL runs every
    one of them exactly once and to completion, and a failure in any fails the
    statement, so the transaction keeps nothing. One round trip instead of one a
    table, while the head row is held.
    """
    parts: list[str] = []
    params: list[object] = []
    if batch.entries:
        idx, leaves, payloads = zip(*batch.entries, strict=True)
        parts.append(
            "e AS (INSERT INTO log_entries (idx, leaf_hash, payload)"
            " SELECT * FROM unnest(%b::bigint[], %b::bytea[], %b::bytea[]))"
        )
        params += [list(idx), list(leaves), list(payloads)]
    if batch.tiles:
        keys, hashes = zip(*batch.tiles, strict=True)
        parts.append(
            "t AS (INSERT INTO log_tiles (id, hashes)"
            " SELECT * FROM unnest(%b::bigint[], %b::bytea[]))"
        )
        params += [list(keys), list(hashes)]
    if checkpoint is not None:
        parts.append("c AS (INSERT INTO log_checkpoints (size, note) VALUES (%s, %s))")
        params += list(checkpoint)
    with_ = f"WITH {', '.join(parts)} " if parts else ""
    head = f"{with_}UPDATE log_head SET size = %s WHERE id = 1"  # noqa: S608 - constant parts
    return head, [*params, end]


class PostgresLog:
    """The log tables of one PostgreSQL schema, as an ``AtomicLogStore``."""

    def __init__(
        self,
        db: PostgresDB,
        on_versions: Callable[[dict[int, int]], None] | None = None,
        owner: Callable[[], int] | None = None,
    ) -> None:
        """Use ``db``'s pool.

        Args:
            db: The schema's connections.
            on_versions: Told, once a batch committed, the versions its unit gave
                its written effects (the persistence index's memo).
            owner: This replica's owner id, its lock held
                (:class:`~sop_verified.storage.postgres_owners.PendingOwners`);
                None: pending rows carry no owner (every one is boot repair's).
        """
        self._db = db
        self._on_versions = on_versions
        self._owner = owner
        self._indexer: EntryIndexer | None = None
        self._indexed_to: int | None = None  # what the index reflects, as last committed here

    def follow(self, indexer: EntryIndexer) -> None:
        """Keep the persistence index in step with the log, batch by batch.

        Catches up on the entries appended since the index last followed the
        log, then derives each later batch's unit of work with ``indexer``.

        Raises:
            StorageError: the catch-up failed.
        """
        behind = self._db.query(
            "SELECT 1 FROM log_entries WHERE idx >= COALESCE("
            "(SELECT value FROM persist_state WHERE key = 'indexed_to'), 0) LIMIT 1"
        )
        if behind:  # a write transaction only when there is something to index
            with self._db.tx() as cur:
                catch_up(cur, indexer)
        self._indexer = indexer
        self._indexed_to = None  # read from the database at the next batch

    def log_tail(self) -> tuple[int, str | None]:
        """Return the entry count (the head) and the latest checkpoint note, in one snapshot.

        Raises:
            StorageError: the read failed, or the head row is missing.
        """
        rows = self._db.query(_TAIL)
        if not rows:
            raise StorageError("the log's head row is missing: the schema was tampered with")
        size, note = rows[0]
        return int(size), None if note is None else str(note)

    def read_tiles(self, keys: Sequence[int]) -> dict[int, bytes]:
        """Return stored tiles by key, in one query."""
        if not keys:
            return {}
        rows = self._db.query("SELECT id, hashes FROM log_tiles WHERE id = ANY(%s)", (list(keys),))
        return {int(k): bytes(v) for k, v in rows}

    def write_batch(self, batch: Batch) -> None:
        """Insert the batch's entries, tiles and checkpoint, and apply its unit of work.

        Raises:
            StorageError: the write failed, or a blob no effect of the batch
                records; nothing is stored.
        """
        self.commit(batch, plan_unit(batch, self._indexer))

    def commit(self, batch: Batch, unit: UnitOfWork | None) -> None:
        """Write ``batch`` and apply ``unit`` in one durable transaction, or neither.

        The head row is locked first, so concurrent writers queue on it; then
        one statement writes the whole batch and moves the head (:func:`_append`).

        Raises:
            StorageError: the head is not at the batch's start, or the write
                failed; nothing is stored.
        """
        versions: dict[int, int] = {}
        written: list[tuple[int, int]] = []  # the log's growth, once the rows are in
        owner = 0 if unit is None or self._owner is None else self._owner()
        with self._db.tx(lambda: written[0] if written else None) as cur:
            # spec: INV-5 — contiguous and gap-free: the batch is (re)built on the locked head
            rebuilt = batch.on_head(lock_head(cur))
            if rebuilt is None:  # nothing left to write (every part failed to build)
                return
            if rebuilt is not batch:  # another replica went first: built again on its head
                batch = rebuilt
                unit = None if unit is None else plan_unit(batch, self._indexer)
            end = batch.start + len(batch.entries)
            checkpoint = batch.signed_checkpoint()  # the head row is locked: sign now (INV-5)
            cur.execute(*_append(batch, checkpoint, end))
            written.append((batch.start, end))
            if unit is not None:
                if self._indexed_to != batch.start and indexed_to(cur) != batch.start:
                    if self._indexer is None:
                        raise StorageError("the persistence index is behind the log; no indexer")
                    self._indexed_to = None
                    catch_up(cur, self._indexer, until=batch.start)
                versions = apply_unit(cur, unit, owner)
        if unit is not None:  # only after COMMIT: a rolled-back batch changes nothing
            self._indexed_to = unit.indexed_to
            if versions and self._on_versions is not None:
                self._on_versions(versions)

    def read_entries_containing(
        self, start: int, end: int, needles: Sequence[bytes]
    ) -> list[tuple[int, bytes, bytes]]:
        """Entries ``[start, end)`` whose payload contains one of ``needles`` (the server scans)."""
        if not needles:
            return []
        rows = self._db.query(
            "SELECT idx, leaf_hash, payload FROM log_entries"
            " WHERE idx >= %s AND idx < %s"
            " AND EXISTS (SELECT 1 FROM unnest(%s::bytea[]) n WHERE position(n IN payload) > 0)"
            " ORDER BY idx",
            (start, end, list(needles)),
        )
        return [(int(r[0]), bytes(r[1]), bytes(r[2])) for r in rows]

    def read_entries(self, start: int, end: int) -> list[tuple[int, bytes, bytes]]:
        """Return entries ``[start, end)`` as ``(index, leaf hash, payload)``."""
        rows = self._db.query(
            "SELECT idx, leaf_hash, payload FROM log_entries"
            " WHERE idx >= %s AND idx < %s ORDER BY idx",
            (start, end),
        )
        return [(int(r[0]), bytes(r[1]), bytes(r[2])) for r in rows]

    def checkpoint_sizes(self, after: int, limit: int) -> list[int]:
        """The sizes of the stored checkpoints past ``after``, ascending, at most ``limit``."""
        rows = self._db.query(
            "SELECT size FROM log_checkpoints WHERE size > %s ORDER BY size LIMIT %s",
            (after, limit),
        )
        return [int(r[0]) for r in rows]

    def read_checkpoints(self, low: int, high: int) -> list[tuple[int, str]]:
        """The stored checkpoints of sizes in ``[low, high]`` as ``(size, note)``, ascending."""
        rows = self._db.query(
            "SELECT size, note FROM log_checkpoints WHERE size >= %s AND size <= %s ORDER BY size",
            (low, high),
        )
        return [(int(r[0]), str(r[1])) for r in rows]


class PostgresLogReader:
    """A read-only view of a schema's log tables, streamed for a full audit (``LogReader``).

    Every read is made in ONE snapshot: a ``REPEATABLE READ, READ ONLY`` transaction
    on a connection of its own, begun at the first read and held until :meth:`close`.
    Replicas append while an audit of a live log runs; read in several snapshots, the
    entries would run past the checkpoints read before them (each batch stores its
    entries and its checkpoint in one transaction, so one snapshot never shows that).
    """

    def __init__(self, db: PostgresDB) -> None:
        """Read through ``db``'s pool (the schema's version is checked by whoever opened it)."""
        self._db = db
        self._held: ExitStack | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._cursors = 0

    def _snapshot(self) -> psycopg.Connection[Any]:
        """The connection whose transaction holds the snapshot (begun at the first read)."""
        if self._conn is not None:
            return self._conn
        held = ExitStack()
        try:
            conn = held.enter_context(self._db.connection())
            held.enter_context(conn.transaction())
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        except psycopg.Error as exc:
            held.close()
            raise StorageError(f"postgresql read failed: {self._db.scrub(str(exc))}") from None
        self._held, self._conn = held, conn
        return conn

    def _rows(self, query: str, params: Sequence[object] = ()) -> list[Any]:
        try:
            return self._snapshot().execute(query, params).fetchall()
        except psycopg.Error as exc:
            raise StorageError(f"postgresql read failed: {self._db.scrub(str(exc))}") from None

    def close(self) -> None:
        """End the snapshot and give the connection back (the reader may be read again)."""
        held, self._held, self._conn = self._held, None, None
        if held is not None:
            with suppress(psycopg.Error):
                held.close()

    def entry_rows(self) -> int:
        """Return the number of entry rows."""
        ((count,),) = self._rows("SELECT count(*) FROM log_entries")
        return int(count)

    def _stream(self, query: str, chunk: int) -> Iterator[Any]:
        """Rows of ``query`` in the snapshot, ``chunk`` at a time (a server-side cursor)."""
        self._cursors += 1
        try:
            with self._snapshot().cursor(name=f"sop_audit_{self._cursors}") as cur:
                cur.itersize = max(1, chunk)
                cur.execute(query)
                yield from cur
        except psycopg.Error as exc:
            raise StorageError(f"postgresql read failed: {self._db.scrub(str(exc))}") from None

    def iter_entries(self, chunk: int) -> Iterator[tuple[int, bytes, bytes]]:
        """Yield every entry row in index order."""
        sql = "SELECT idx, leaf_hash, payload FROM log_entries ORDER BY idx"
        for r in self._stream(sql, chunk):
            yield int(r[0]), bytes(r[1]), bytes(r[2])

    def iter_tiles(self, chunk: int) -> Iterator[tuple[int, bytes]]:
        """Yield every stored tile in key (completion) order."""
        for r in self._stream("SELECT id, hashes FROM log_tiles ORDER BY id", chunk):
            yield int(r[0]), bytes(r[1])

    def read_tiles(self, keys: Sequence[int]) -> dict[int, bytes]:
        """Return stored tiles by key."""
        if not keys:
            return {}
        rows = self._rows("SELECT id, hashes FROM log_tiles WHERE id = ANY(%s)", (list(keys),))
        return {int(k): bytes(v) for k, v in rows}

    def checkpoints(self) -> list[tuple[int, str]]:
        """Return every stored checkpoint in size order."""
        rows = self._rows("SELECT size, note FROM log_checkpoints ORDER BY size")
        return [(int(r[0]), str(r[1])) for r in rows]
