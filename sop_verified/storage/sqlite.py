"""The embedded default backend: one SQLite file (WAL, synchronous=FULL) holding every role.

:class:`SQLiteBackend` opens the database in the data directory and hands out
one small object per role (the Protocols of :mod:`sop_verified.storage.ports`):

- ``backend.log`` (:class:`~sop_verified.storage.entry_log.StoreLog`): the
  tamper-evident log, over ``backend.log_store``
  (:class:`~sop_verified.storage.sqlite_log.SQLiteLog`);
- ``backend.capabilities``, ``backend.policies``, ``backend.verdicts``;
- ``backend.persist`` (the persistence index) and ``backend.blobs``;
- :meth:`SQLiteBackend.open_scope`: a scope's bytes, as files under the data
  directory (:class:`~sop_verified.storage.blobs.ScopeDir`);
- ``backend.records`` (the protocol record index).

Every write is its own transaction and is durable (fsynced) when the call
returns; concurrent log appends share one transaction (group commit). Every
failure is raised as :class:`~sop_verified.errors.StorageError`, which the
kernel turns into DENY (INV-2). Rows are only ever inserted: nothing here
updates or deletes (INV-5), except the persistence index's two work queues
(pending decisions, files to purge). The persistence index is derived from
the log: once :meth:`SQLiteBackend.set_entry_indexer` is called, every batch
of log entries applies its unit of work (index rows, small blobs) in the
batch's own transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

from sop_verified.errors import IntegrityError, StorageError
from sop_verified.storage.blobs import ScopeDir
from sop_verified.storage.entry_log import StoreLog
from sop_verified.storage.persist_index import EntryIndexer
from sop_verified.storage.ports import DEFAULT_ORIGIN
from sop_verified.storage.seal_layout import KEYLESS, SEALED
from sop_verified.storage.sqlite_blobs import INLINE_SCHEMA, SQLiteBlobs, store_blobs
from sop_verified.storage.sqlite_capabilities import CAPABILITY_SCHEMA, SQLiteCapabilities
from sop_verified.storage.sqlite_db import READ_ONLY, SQLiteDB, connect_read_only, insert_rows
from sop_verified.storage.sqlite_log import LOG_SCHEMA, SQLiteLog
from sop_verified.storage.sqlite_persist import PERSIST_SCHEMA, SQLitePersistIndex
from sop_verified.storage.sqlite_policies import POLICY_SCHEMA, SQLitePolicies
from sop_verified.storage.sqlite_protocols import PROTOCOL_SCHEMA, SQLiteRecordIndex
from sop_verified.storage.sqlite_seal import (
    SEAL_SCHEMA,
    accept_config,
    check_state,
    close_seal,
    register,
    seal_if_empty,
)
from sop_verified.storage.sqlite_verdicts import VERDICT_SCHEMA, SQLiteVerdicts
from sop_verified.storage.state_seal import SealKeeper
from sop_verified.storage.unit_of_work import KeptBlob
from sop_verified.tools.private_fs import make_private_dir

__all__ = ["DEFAULT_ORIGIN", "SQLiteBackend"]

_LOG_COPY = (
    ("log_entries", "idx, leaf_hash, payload", "idx"),
    ("log_tiles", "id, hashes", "id"),
    ("log_checkpoints", "size, note", "size"),
)
_COPY_CHUNK = 20_000

_SCHEMA = (
    CAPABILITY_SCHEMA
    + POLICY_SCHEMA
    + VERDICT_SCHEMA
    + LOG_SCHEMA
    + PERSIST_SCHEMA
    + INLINE_SCHEMA
    + PROTOCOL_SCHEMA
    + SEAL_SCHEMA
)


class SQLiteBackend:
    """Every storage role, backed by one SQLite database file (a ``StorageBackend``)."""

    def __init__(
        self, path: Path, *, state_key: bytes | None = None, read_only: bool = False
    ) -> None:
        """Open (or create) the database at ``path``; the log opens with :meth:`StoreLog.open`.

        Args:
            path: The database file.
            state_key: The key the derived state is sealed under (derived from
                the capability MAC key, INV-11). Without it the store opens
                read-only in effect: every write to the log or a derived table
                is refused, since it could not be sealed.
            read_only: Open the existing file read-only: nothing in its directory
                changes (no schema, no seal, no ``-wal`` or ``-shm`` file made) and
                every write is refused with :class:`StorageError` (a dry run).

        Raises:
            StorageError: the file cannot be opened as a SQLite database.
        """
        self.path = path
        self._keeper = None if state_key is None else SealKeeper(state_key, tuple(SEALED))
        keeper = self._keeper

        def prepare(db: sqlite3.Connection) -> None:
            register(db, keeper)

        def explain() -> str | None:
            return KEYLESS if keeper is None else keeper.failure

        def before_commit(db: sqlite3.Connection, growth: tuple[int, int] | None) -> None:
            if keeper is not None:  # spec: INV-11 — one MAC per transaction, bound to the log
                close_seal(db, growth)

        self._db = SQLiteDB(
            path,
            _SCHEMA,
            prepare=prepare,
            explain=explain,
            before_commit=before_commit,
            read_only=read_only,
        )
        if keeper is not None and not read_only and not self._db.query("SELECT 1 FROM state_seal"):
            with self._db.tx() as db:  # only a store without a seal writes at open
                seal_if_empty(db, keeper)
        self._blobs = SQLiteBlobs(self._db)
        self._persist = SQLitePersistIndex(self._db, self._blobs)
        self._log_store = SQLiteLog(self._db, self._persist.note_versions)
        self._log = StoreLog(self._log_store)
        self._capabilities = SQLiteCapabilities(self._db)
        self._policies = SQLitePolicies(self._db)
        self._verdicts = SQLiteVerdicts(self._db)
        self._records = SQLiteRecordIndex(
            path,
            prepare=prepare,
            explain=explain,
            before_commit=before_commit,
            read_only=read_only,
        )

    @classmethod
    def open(
        cls, path: Path, *, state_key: bytes | None = None, read_only: bool = False
    ) -> SQLiteBackend:
        """Open (or create) the database at ``path`` (the same as the constructor).

        Raises:
            StorageError: the file cannot be opened as a SQLite database.
        """
        return cls(path, state_key=state_key, read_only=read_only)

    @property
    def log(self) -> StoreLog:
        """The tamper-evident log (closed until opened with its checkpoint key)."""
        return self._log

    @property
    def log_store(self) -> SQLiteLog:
        """The log's tables."""
        return self._log_store

    @property
    def capabilities(self) -> SQLiteCapabilities:
        """Admitted capabilities and revocations."""
        return self._capabilities

    @property
    def policies(self) -> SQLitePolicies:
        """Activated policy sets."""
        return self._policies

    @property
    def verdicts(self) -> SQLiteVerdicts:
        """Write-once proof verdicts."""
        return self._verdicts

    @property
    def persist(self) -> SQLitePersistIndex:
        """The persistence index (pending decisions, objects, purges, small blobs)."""
        return self._persist

    @property
    def blobs(self) -> SQLiteBlobs:
        """The small blobs kept in the database."""
        return self._blobs

    @property
    def records(self) -> SQLiteRecordIndex:
        """The protocol record index (its own connection to the same file)."""
        return self._records

    def open_scope(self, name: str, root: str, base: Path) -> ScopeDir:
        """The files of scope ``name``: its root ``base/root``, opened once without following
        a symlink (the scopes directory ``base`` is created 0700 if missing).

        Raises:
            ConfinementError: ``root`` is malformed, or passes through a symlink.
            StorageError: a directory cannot be created or opened (read-only: it is missing).
        """
        if self._db.read_only:  # nothing is created: a boot made every root
            if not (base / root).is_dir():
                raise StorageError(
                    f"scope root `{base / root}` is missing and the store {READ_ONLY};"
                    " a boot makes it (`sop status`)"
                )
            return ScopeDir(base, root)
        try:
            make_private_dir(base)
        except OSError as exc:
            raise StorageError(f"cannot create the scopes directory `{base}`: {exc}") from exc
        return ScopeDir(base, root)

    def set_entry_indexer(self, indexer: EntryIndexer) -> None:
        """Keep the persistence index in step with the log, batch by batch.

        Catches up on the entries appended since the index last followed the
        log (all of them for an older database), then derives each later
        batch's unit of work with ``indexer`` and applies it in the batch's
        transaction.

        Args:
            indexer: Says what log entries change in the index; must not raise.

        Raises:
            StorageError: the catch-up failed.
        """
        self._log_store.follow(indexer)

    def self_test(self) -> None:
        """SQLite's quick integrity check; raise StorageError unless it says ``ok``."""
        self._db.self_test()

    def verify_state(self, log_size: int, config: str | None = None) -> None:
        """Check every derived table against the state seal and the seal against the log.

        Args:
            log_size: The log's size, authenticated by its signed checkpoint.
            config: The configuration's digest, held against the accepted one
                (None: not checked).

        Raises:
            IntegrityError: a derived table, the seal or its triggers were
                tampered with (the first table that differs is named), or the
                store was opened without the state key (nothing can be checked).
            StorageError: the database could not be read.
        """
        keeper = self._keeper
        if keeper is None:
            raise IntegrityError("the derived state cannot be checked without SOP's state key")
        self._db.read(lambda db: check_state(db, keeper, log_size, config))

    def accept_config(self, config: str) -> None:
        """Make ``config`` (``sha256:<hex>``) the configuration the seal accepts (INV-11).

        Raises:
            StorageError: the seal does not open (or no key), or the write failed.
        """
        with self._db.tx() as db:
            accept_config(db, config)

    def copy_log(self, source: Path, progress: Callable[[int, int], None] | None = None) -> int:
        """Copy the log's rows of the database at ``source`` into this empty store, verbatim.

        The first step of rebuilding derived state from the log (``sop state
        repair``): the copy is sealed as it goes (the state seal grows with
        each entry); nothing derived is copied. The caller audits the source
        log first.

        Args:
            source: Another SOP database (opened read-only).
            progress: Called with ``(entries copied, entries)``.

        Returns:
            The number of entries copied.

        Raises:
            StorageError: this store's log is not empty, or a read or write failed.
        """
        if self._log_store.log_tail()[0]:
            raise StorageError("the log can only be copied into an empty store")
        src = connect_read_only(source, "to copy its log")
        try:
            ((size,),) = src.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM log_entries")
            for table, columns, key in _LOG_COPY:
                at = -1
                while True:
                    rows = src.execute(
                        f"SELECT {columns} FROM {table} WHERE {key} > ?"  # noqa: S608
                        f" ORDER BY {key} LIMIT {_COPY_CHUNK}",
                        (at,),
                    ).fetchall()
                    if not rows:
                        break
                    growth = (rows[0][0], rows[-1][0] + 1) if table == "log_entries" else None
                    with self._db.tx(growth) as db:
                        width = len(rows[0])
                        insert_rows(db, f"INSERT INTO {table} ({columns})", rows, width)
                    at = rows[-1][0]
                    if progress is not None and table == "log_entries":
                        progress(at + 1, size)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read the log of `{source}`: {exc}") from exc
        finally:
            src.close()
        return int(size)

    def restore_blobs(self, blobs: Sequence[KeptBlob]) -> None:
        """Keep small blobs again under their effects (a rebuild; each checked by the caller).

        Raises:
            StorageError: the write failed (nothing is kept).
        """
        with self._db.tx() as db:
            store_blobs(db, blobs)

    def close(self) -> None:
        """Close the database's connections."""
        self._records.close()
        self._db.close()
