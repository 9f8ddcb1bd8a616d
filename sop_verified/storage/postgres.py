"""The shared backend: one PostgreSQL schema holding every role, for SOP past one machine.

:class:`PostgresBackend` is the PostgreSQL twin of
:class:`~sop_verified.storage.sqlite.SQLiteBackend`, with the same tables,
the same rules and the same errors, so the storage conformance suite runs on
both (tests/storage/conformance/). It hands out one small object per role:

- ``backend.log`` (:class:`~sop_verified.storage.entry_log.StoreLog`) over
  ``backend.log_store`` (:class:`~sop_verified.storage.postgres_log.PostgresLog`):
  group commit above, one short transaction per batch below, sequenced on a
  single head row locked ``FOR UPDATE``;
- ``backend.capabilities``, ``backend.policies``, ``backend.verdicts``,
  ``backend.records`` (:mod:`sop_verified.storage.postgres_roles`);
- ``backend.persist`` (the persistence index) and ``backend.blobs`` (small
  blobs in BYTEA, kept with their decision);
- :meth:`PostgresBackend.open_scope`: every other byte a scope stores, in
  BYTEA rows (:mod:`sop_verified.storage.postgres_content`), so every replica
  reads what any of them wrote.

Every table lives in one schema (``sop`` unless named), created and migrated
by versioned migrations (:mod:`sop_verified.storage.postgres_schema`); a
schema at an unknown version, or with tables and no version, is refused at
open. The derived state is sealed under the state key exactly as in SQLite
(INV-11, :mod:`sop_verified.storage.postgres_seal`). Every write is one
transaction, durable when it returns (``synchronous_commit`` on, the
server's default); every failure is raised as
:class:`~sop_verified.errors.StorageError`, which the kernel turns into DENY
(INV-2). The DSN's password is never logged or shown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from sop_verified.errors import IntegrityError, StorageError
from sop_verified.storage.entry_log import StoreLog
from sop_verified.storage.persist_index import EntryIndexer
from sop_verified.storage.ports import DEFAULT_ORIGIN
from sop_verified.storage.postgres_blobs import PostgresBlobs
from sop_verified.storage.postgres_content import PostgresScopeContent
from sop_verified.storage.postgres_db import (
    DEFAULT_SCHEMA,
    Cursor,
    PostgresDB,
    check_schema_name,
    dsn_secrets,
    redact_dsn,
)
from sop_verified.storage.postgres_log import PostgresLog, PostgresLogReader
from sop_verified.storage.postgres_owners import PendingOwners
from sop_verified.storage.postgres_persist import PostgresPersistIndex
from sop_verified.storage.postgres_roles import (
    PostgresCapabilities,
    PostgresPolicies,
    PostgresRecordIndex,
    PostgresVerdicts,
)
from sop_verified.storage.postgres_schema import check_version, migrate
from sop_verified.storage.postgres_seal import (
    Decoders,
    accept_config,
    check_state,
    close_seal,
    decoders,
    explain,
    seal_if_empty,
    start_journal,
)
from sop_verified.storage.seal_layout import SEALED
from sop_verified.storage.state_seal import SealKeeper
from sop_verified.storage.state_view import StateView, read_view

__all__ = ["DEFAULT_ORIGIN", "DEFAULT_SCHEMA", "PostgresBackend", "redact_dsn"]


def _prepare_schema(dsn: str, schema: str, allow_migrate: bool, timeout: float) -> None:
    """Create or migrate ``schema`` (``allow_migrate``), or check it is at this build's version.

    Raises:
        StorageError: no connection, or the schema's version is refused.
    """
    secrets = dsn_secrets(dsn)

    def scrub(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, "***")
        return text

    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=max(1, round(timeout))) as conn:
            if allow_migrate:
                migrate(conn, schema)
            else:
                check_version(conn, schema)
    except psycopg.OperationalError as exc:
        raise StorageError(
            f"cannot connect to PostgreSQL at `{redact_dsn(dsn)}`: {scrub(str(exc).strip())}"
        ) from None
    except psycopg.Error as exc:
        raise StorageError(
            f"cannot prepare the PostgreSQL schema `{schema}`: {scrub(str(exc).strip())}"
        ) from None


class PostgresBackend:
    """Every storage role, backed by one PostgreSQL schema (a ``StorageBackend``)."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        state_key: bytes | None = None,
        migrate: bool = True,
        pool_size: int = 4,
        timeout: float = 5.0,
    ) -> None:
        """Connect to ``dsn``, create or migrate ``schema`` (or check it), and open every role.

        Args:
            dsn: A libpq connection string or URL (its password is never shown).
            schema: The schema the tables live in.
            state_key: The key the derived state is sealed under (derived from
                the capability MAC key, INV-11). Without it every write to a
                derived table is refused, since it could not be sealed.
            migrate: Create the schema or apply pending migrations (``sop
                init``); False: refuse a schema not at this build's version
                (a boot that changes nothing).
            pool_size: Most connections held at once.
            timeout: Seconds to wait for a connection; past it the call fails
                with StorageError (a DENY).

        Raises:
            StorageError: the DSN does not parse, PostgreSQL is not answering,
                or the schema is at an unknown version, unversioned (or, with
                ``migrate`` False, not at this build's version).
        """
        self.schema = check_schema_name(schema)
        self.where = redact_dsn(dsn)
        _prepare_schema(dsn, schema, migrate, timeout)
        self._keeper = None if state_key is None else SealKeeper(state_key, tuple(SEALED))
        keeper = self._keeper
        self._decode: Decoders = {}

        def prepare(conn: psycopg.Connection[Any]) -> None:
            if keeper is not None:  # only SOP's keyed sessions may write sealed tables
                start_journal(conn)

        def before_commit(cur: Cursor, growth: tuple[int, int] | None) -> None:
            if keeper is not None:  # spec: INV-11 — one MAC per transaction, bound to the log
                close_seal(cur, keeper, self._decode, growth)

        self._db = PostgresDB(
            dsn,
            schema,
            pool_size=pool_size,
            timeout=timeout,
            prepare=prepare,
            explain=explain,
            before_commit=before_commit,
        )
        try:
            self._decode = self._db.read(decoders)
            if keeper is not None and not self._db.query("SELECT 1 FROM state_seal"):
                with self._db.tx() as cur:  # only a store without a seal writes at open
                    seal_if_empty(cur, keeper)
        except BaseException:
            self._db.close()
            raise
        self._owners = PendingOwners(
            lambda: psycopg.connect(
                dsn,
                autocommit=True,
                connect_timeout=max(1, round(timeout)),
                application_name=f"sop:{schema}:owner",
            ),
            self._db.scrub,
            self.where,
        )
        self._blobs = PostgresBlobs(self._db)
        self._persist = PostgresPersistIndex(self._db, self._blobs, self._owners)
        self._log_store = PostgresLog(self._db, self._persist.note_versions, self._owners.owner)
        self._log = StoreLog(self._log_store)
        self._capabilities = PostgresCapabilities(self._db)
        self._policies = PostgresPolicies(self._db)
        self._verdicts = PostgresVerdicts(self._db)
        self._records = PostgresRecordIndex(self._db)

    @classmethod
    def open(
        cls,
        dsn: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        state_key: bytes | None = None,
        migrate: bool = True,
    ) -> PostgresBackend:
        """Open the backend in ``schema`` at ``dsn`` (the constructor, with its defaults).

        Raises:
            StorageError: as the constructor.
        """
        return cls(dsn, schema=schema, state_key=state_key, migrate=migrate)

    @property
    def log(self) -> StoreLog:
        """The tamper-evident log (closed until opened with its checkpoint key)."""
        return self._log

    @property
    def log_store(self) -> PostgresLog:
        """The log's tables."""
        return self._log_store

    @property
    def capabilities(self) -> PostgresCapabilities:
        """Admitted capabilities and revocations."""
        return self._capabilities

    @property
    def policies(self) -> PostgresPolicies:
        """Activated policy sets."""
        return self._policies

    @property
    def verdicts(self) -> PostgresVerdicts:
        """Write-once proof verdicts."""
        return self._verdicts

    @property
    def persist(self) -> PostgresPersistIndex:
        """The persistence index (pending decisions, objects, purges, small blobs)."""
        return self._persist

    @property
    def blobs(self) -> PostgresBlobs:
        """The small blobs kept in the database."""
        return self._blobs

    @property
    def records(self) -> PostgresRecordIndex:
        """The protocol record index."""
        return self._records

    def open_scope(self, name: str, root: str, base: Path) -> PostgresScopeContent:
        """The bytes of scope ``name``: rows of this schema, shared by every replica.

        ``root`` and ``base`` (a directory of this replica's) are not used: nothing a
        scope stores is kept on this machine.
        """
        del root, base
        return PostgresScopeContent(self._db, name)

    def log_reader(self) -> PostgresLogReader:
        """A streaming reader of the log's tables, for a full audit (``sop log verify``)."""
        return PostgresLogReader(self._db)

    def set_entry_indexer(self, indexer: EntryIndexer) -> None:
        """Keep the persistence index in step with the log, batch by batch.

        Raises:
            StorageError: the catch-up failed.
        """
        self._log_store.follow(indexer)

    def self_test(self) -> None:
        """Check the schema is still at this build's version and answers.

        Raises:
            StorageError: it does not answer, or its version changed.
        """
        self._db.read(lambda conn: check_version(conn, self.schema))

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
        self._db.read(lambda conn: check_state(conn, keeper, log_size, config))

    def read_state(self, log_size: int, config: str | None = None) -> StateView:
        """Check the state seal, then read capabilities, revocations and the active policy set,
        in one read-only snapshot (an inspection: ``sop cap list``, ``sop status``).

        Args:
            log_size: The log's size, authenticated by its signed checkpoint (other
                replicas may have appended since: the seal is the head's in the snapshot).
            config: The configuration's digest, held against the accepted one.

        Returns:
            The checked view.

        Raises:
            IntegrityError: as :meth:`verify_state`.
            StorageError: the database could not be read.
        """
        keeper = self._keeper
        if keeper is None:
            raise IntegrityError("the derived state cannot be checked without SOP's state key")

        def read(conn: psycopg.Connection[Any]) -> StateView:
            check_state(conn, keeper, log_size, config)  # spec: INV-11
            head = conn.execute("SELECT size FROM log_head WHERE id = 1").fetchone()
            at = log_size if head is None else max(log_size, int(head[0]))
            return read_view(lambda q: conn.execute(q).fetchall(), at)

        return self._db.read(read)

    def accept_config(self, config: str) -> None:
        """Make ``config`` (``sha256:<hex>``) the configuration the seal accepts (INV-11).

        Raises:
            StorageError: the seal does not open (or no key), or the write failed.
        """
        with self._db.tx() as cur:
            accept_config(cur, self._keeper, config)

    def close(self) -> None:
        """Close every connection; later calls raise StorageError."""
        self._owners.close()
        self._db.close()
