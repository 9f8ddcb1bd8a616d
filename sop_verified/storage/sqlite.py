"""The embedded default backend: SQLite in WAL mode, synchronous=FULL.

One database file in the data directory holds admitted capabilities,
revocations, activated policy sets and the tamper-evident log (its tables
live in :mod:`sop_verified.storage.sqlite_log`, its logic in
:class:`~sop_verified.tools.tlog.TransparencyLog`). Every write is its own
transaction and is durable (fsynced) when the call returns; concurrent log
appends share one transaction (group commit). Every failure is raised as
:class:`~sop_verified.errors.StorageError`, which the kernel turns into DENY
(INV-2). Rows are only ever inserted: nothing here updates or deletes (INV-5),
except the persistence index's two work queues (pending decisions, files to
purge; :mod:`sop_verified.storage.sqlite_persist`). That index is derived from
the log: once :meth:`SQLiteStore.set_entry_indexer` is called, every batch of
log entries updates it in the batch's own transaction.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sop_verified.errors import StorageError
from sop_verified.storage.persist_index import EffectRecord, EntryIndexer
from sop_verified.storage.sqlite_log import LOG_SCHEMA, SQLiteLog
from sop_verified.storage.sqlite_persist import (
    INLINE_SCHEMA,
    PERSIST_SCHEMA,
    SQLitePersistIndex,
    apply_ops,
    fill_versions,
    indexed_to,
    migrate_blobs,
    set_indexed_to,
    store_blobs,
)
from sop_verified.tools.signed_note import Signer, Verifier
from sop_verified.tools.tlog import TransparencyLog
from sop_verified.tools.tlog_store import Attachment, Batch, LinkedPart, Receipt

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
CREATE TABLE IF NOT EXISTS verdicts (
    digest TEXT PRIMARY KEY,
    record BLOB NOT NULL
);
CREATE TRIGGER IF NOT EXISTS verdicts_no_update BEFORE UPDATE ON verdicts
BEGIN SELECT RAISE(ABORT, 'proof verdicts are write-once'); END;
CREATE TRIGGER IF NOT EXISTS verdicts_no_delete BEFORE DELETE ON verdicts
BEGIN SELECT RAISE(ABORT, 'proof verdicts are write-once'); END;
"""

DEFAULT_ORIGIN = "sop.local/log"


class SQLiteStore:
    """Capability, policy and log storage in one SQLite file."""

    def __init__(self, path: Path) -> None:
        """Open (or create) the database at ``path``; the log opens on first use.

        Raises:
            StorageError: the file cannot be opened as a SQLite database.
        """
        self.path = path
        self._lock = threading.Lock()
        self._tlog: TransparencyLog | None = None
        try:
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA + LOG_SCHEMA + PERSIST_SCHEMA + INLINE_SCHEMA)
            fill_versions(self._db)
            # a second connection for the persistence index's reads: under WAL it sees every
            # committed transaction and never waits for the writer's commit (its fsync)
            self._reader = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the sqlite store `{path}`: {exc}") from exc
        self._indexer: EntryIndexer | None = None
        self._indexed_to: int | None = None  # what the index reflects, as last committed here
        self._log_store = SQLiteLog(self._tx, self._query, self._on_log_batch)
        self._read_lock = threading.Lock()
        self.persist = SQLitePersistIndex(self._tx, self._read_query)
        """The persistence index (pending decisions, objects, purges)."""

    def close(self) -> None:
        """Close the database."""
        with self._lock, self._read_lock:
            self._reader.close()
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

    def _on_log_batch(self, db: sqlite3.Connection, batch: Batch) -> Callable[[], None] | None:
        """Inside a log batch's transaction: bring the index up to it, keep its blobs.

        The index is fed the payloads in hand when it is exactly at the
        batch's start (the usual case); otherwise it catches up from the
        stored entries, this batch's included. Each small blob is kept under
        the effect entry of the batch that records it (ADR 0009).

        Returns:
            What to run after the commit: publish the versions the batch gave.

        Raises:
            StorageError: a blob that no written effect of the batch records,
                or blobs without a persistence index (nothing is committed).
        """
        if self._indexer is None:
            if batch.attachments:
                raise StorageError("small blobs are kept only with the persistence index")
            return None
        entries = [(i, p) for i, _, p in batch.entries]
        ops = None
        if self._indexed_to != batch.start and indexed_to(db) != batch.start:
            self._indexed_to = None
            _index_new_entries(db, self._indexer)
            after = None
        else:
            ops = self._indexer(entries)
            versions = apply_ops(db, ops) if ops else {}
            end = batch.start + len(batch.entries)
            set_indexed_to(db, end)

            def after() -> None:  # only after COMMIT: a rolled-back batch changes nothing
                self._indexed_to = end
                if versions:
                    self.persist.note_versions(versions)

        if batch.attachments:
            effects = (ops if ops is not None else self._indexer(entries)).effects
            store_blobs(db, _blob_rows(batch.attachments, effects))
        return after

    def set_entry_indexer(self, indexer: EntryIndexer) -> None:
        """Keep the persistence index in step with the log, batch by batch.

        Catches up on the entries appended since the index last followed the
        log (all of them for an older database), then applies each later
        batch's changes in that batch's own transaction.

        Args:
            indexer: Says what log entries change in the index; must not raise.

        Raises:
            StorageError: the catch-up failed.
        """
        with self._tx() as db:
            _index_new_entries(db, indexer)
            migrate_blobs(db)
            self._indexer = indexer
            self._indexed_to = None  # read from the database at the next batch

    def _read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock:
            try:
                return fn(self._db)
            except sqlite3.Error as exc:
                raise StorageError(f"sqlite read failed: {exc}") from exc

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        """Run one read statement under the lock and return all rows (the log's hot path)."""
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StorageError(f"sqlite read failed: {exc}") from exc

    def _read_query(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        """Run one read statement on the reader connection (committed state, no writer wait)."""
        with self._read_lock:
            try:
                return self._reader.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StorageError(f"sqlite read failed: {exc}") from exc

    def self_test(self) -> None:
        """SQLite's quick integrity check; raise StorageError unless it says ``ok``."""
        rows = self._read(lambda db: db.execute("PRAGMA quick_check").fetchall())
        if [tuple(r) for r in rows] != [("ok",)]:
            raise StorageError(f"sqlite integrity check failed: {rows[:3]}")

    def open_log(
        self,
        *,
        origin: str = DEFAULT_ORIGIN,
        signer: Signer | None = None,
        trusted: tuple[Verifier, ...] = (),
    ) -> TransparencyLog:
        """Open the log: read its tail and check it against the latest signed checkpoint.

        Args:
            origin: The checkpoint origin line (``origin`` in sop.toml).
            signer: The checkpoint key; None opens it unsigned (tests only: an
                unsigned log refuses to append once it has checkpoints).
            trusted: Further keys the latest checkpoint may be signed by.

        Returns:
            The log, used by :meth:`append` from now on.

        Raises:
            IntegrityError: the tail does not match the latest checkpoint.
            VerificationError: the latest checkpoint does not verify.
            StorageError: the database failed.
        """
        self._tlog = TransparencyLog(self._log_store, origin=origin, signer=signer, trusted=trusted)
        return self._tlog

    @property
    def log(self) -> TransparencyLog:
        """The opened log (opened unsigned on first use if :meth:`open_log` was not called)."""
        if self._tlog is None:
            return self.open_log()
        return self._tlog

    def verify_tail(self) -> None:
        """Check the tail only: last leaf hash, stored nodes and the latest checkpoint.

        Raises:
            IntegrityError: the tail was tampered with.
            StorageError: the database failed.
        """
        self.log.verify_tail()

    # VerdictStore (INV-3: write-once; the triggers refuse UPDATE and DELETE)
    def get(self, digest: str) -> bytes | None:
        """The verdict record stored under ``digest``, or None."""
        rows = self._query("SELECT record FROM verdicts WHERE digest = ?", (digest,))
        if not rows:
            return None
        if not isinstance(rows[0][0], bytes):  # spec: INV-3 — a record is a canonical blob
            raise StorageError(f"the verdict record under `{digest}` is not a blob; it was altered")
        return bytes(rows[0][0])

    def put_once(self, digest: str, record: bytes) -> bytes:
        """Store ``record`` unless ``digest`` has one; return the record now stored."""
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO verdicts (digest, record) VALUES (?, ?)", (digest, record)
            )
            row = db.execute("SELECT record FROM verdicts WHERE digest = ?", (digest,)).fetchone()
        return bytes(row[0])

    def digests(self) -> list[str]:
        """Every digest with a recorded verdict, sorted."""
        return [str(r[0]) for r in self._query("SELECT digest FROM verdicts ORDER BY digest")]

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
        """Durably append one entry (group commit); return its index.

        Raises:
            StorageError: the write failed; nothing was acknowledged.
        """
        return self.log.append(payload).index

    def append_receipt(self, payload: bytes) -> Receipt:
        """Durably append one entry (group commit); return its receipt.

        Raises:
            StorageError: the write failed; nothing was acknowledged.
        """
        return self.log.append(payload)

    def append_parts(
        self, parts: Sequence[LinkedPart]
    ) -> list[tuple[Receipt, Receipt | None] | Exception]:
        """Durably append several parts (an entry, maybe its linked entry) in one transaction
        (see :meth:`TransparencyLog.append_parts`).

        Raises:
            StorageError: the write failed; nothing was acknowledged.
        """
        return self.log.append_parts(parts)

    def log_size(self) -> int:
        """Number of entries in the log."""
        return self.log.size

    def log_entries(self, start: int = 0, end: int | None = None) -> list[tuple[int, bytes, bytes]]:
        """Entries ``[start, end)`` as (index, leaf hash, payload)."""
        return self._log_store.read_entries(start, self.log_size() if end is None else end)


_CATCH_UP_CHUNK = 10_000


def _index_new_entries(db: sqlite3.Connection, indexer: EntryIndexer) -> None:
    """Apply the index changes of every log entry not indexed yet (inside ``db``'s transaction)."""
    start = indexed_to(db)
    while True:
        rows = db.execute(
            "SELECT idx, payload FROM log_entries WHERE idx >= ? ORDER BY idx LIMIT ?",
            (start, _CATCH_UP_CHUNK),
        ).fetchall()
        if not rows:
            return
        ops = indexer([(int(r[0]), bytes(r[1])) for r in rows])
        if ops:
            apply_ops(db, ops)
        start = int(rows[-1][0]) + 1
        set_indexed_to(db, start)


def _blob_rows(
    attachments: Sequence[Attachment], effects: Sequence[EffectRecord]
) -> list[tuple[int, str, str, bytes]]:
    """Each blob with the index of the batch's first written effect of its ``(scope, stored)``.

    Raises:
        StorageError: a blob that no written effect of the batch records.
    """
    holder: dict[tuple[str, str], int] = {}
    for e in effects:
        if e.outcome == "written":
            holder.setdefault((e.scope, e.stored), e.effect_index)
    rows: dict[tuple[str, str], tuple[int, str, str, bytes]] = {}
    for scope, stored, data in attachments:
        index = holder.get((scope, stored))
        if index is None:  # spec: INV-9 — no blob is kept without the effect that records it
            raise StorageError(f"blob `{stored}` of scope `{scope}` has no effect in its batch")
        rows.setdefault((scope, stored), (index, scope, stored, data))
    return list(rows.values())
