"""``sop events tail``'s side of nexus: a data directory's events, read without booting SOP.

Like ``sop log verify`` (:mod:`sop_verified.nexus.log_ops`) it only reads:
the SQLite database is opened read-only without creating or locking anything
(:func:`~sop_verified.storage.sqlite_log.read_only_uri`), a PostgreSQL schema
is only queried. The log is opened without its secret key, its latest
checkpoint verified against the public checkpoint key
(``keys/checkpoint.vkey``), and every entry proved included under it before it
becomes an event (:class:`~sop_verified.events.source.LogEventSource`). A
follower (:meth:`DataDirEvents.refresh`) opens the log again to see new
entries, and refuses a log that no longer extends the checkpoint it last
verified: a log cut back or replaced under a running ``tail --follow`` is an
:class:`~sop_verified.errors.IntegrityError`, never a silent restart.
"""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path

from sop_verified.errors import ConfigError
from sop_verified.events.model import Event
from sop_verified.events.source import LogEventSource
from sop_verified.nexus.config import load_config
from sop_verified.nexus.keys import CHECKPOINT_VKEY, read_vkey
from sop_verified.nexus.telemetry_config import telemetry_boundary
from sop_verified.storage.postgres import PostgresBackend
from sop_verified.storage.sqlite_log import SQLiteLogReader
from sop_verified.tools.signed_note import Verifier
from sop_verified.tools.tlog import TransparencyLog
from sop_verified.tools.tlog_store import LogStore

__all__ = ["DB_FILE", "DataDirEvents"]

DB_FILE = "sop.db"
"""The database file in a data directory (``nexus.sop.DB_NAME``)."""


class DataDirEvents:
    """The events of a data directory's log, read-only (an ``EventSource``, refreshed by hand).

    Use it as a context manager; :meth:`refresh` before the first read.
    """

    def __init__(self, data_dir: Path) -> None:
        """Read ``data_dir``'s configuration and telemetry boundary; nothing is opened yet.

        Raises:
            ConfigError: no configuration, or ``[telemetry] mode = "hash"`` without its key.
        """
        self._dir = data_dir
        self._config = config = load_config(data_dir)
        self._boundary = telemetry_boundary(data_dir, config.telemetry)
        if config.postgresql is None and not (data_dir / DB_FILE).is_file():
            raise ConfigError(
                f"no database in `{data_dir}`", accepted="a data directory made by `sop init`"
            )
        self._pg: PostgresBackend | None = None
        self._sqlite: SQLiteLogReader | None = None
        self._log: TransparencyLog | None = None
        self._trusted: list[Verifier] = []
        self._source = LogEventSource(self._opened, self._boundary)

    def __enter__(self) -> DataDirEvents:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database connections."""
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None
        if self._pg is not None:
            self._pg.close()
            self._pg = None

    @property
    def origin(self) -> str:
        """The log's origin."""
        return self._config.origin

    def _opened(self) -> TransparencyLog:
        if self._log is None:
            self.refresh()
        assert self._log is not None  # refresh sets it or raises
        return self._log

    def refresh(self) -> int:
        """Open the log again, as it is now; return how many entries its checkpoint covers.

        Returns:
            The signed size.

        Raises:
            IntegrityError: the stored tail does not match the latest checkpoint,
                or the log does not extend the checkpoint verified before.
            VerificationError: the latest checkpoint does not verify.
            ConfigError: the public checkpoint key cannot be read.
            StorageError: the database cannot be read.
        """
        vkey = read_vkey(self._dir / CHECKPOINT_VKEY)  # a rotation announces the next key
        if vkey not in self._trusted:
            self._trusted.append(vkey)
        held = None if self._log is None else self._log.checkpoint_note
        log = TransparencyLog(
            self._store(), origin=self._config.origin, signer=None, trusted=self._trusted
        )
        if held is not None:
            log.check_extends(held)  # spec: INV-5 — never a log cut back under a follower
        self._log = log
        return self._source.size()

    def _store(self) -> LogStore:
        if self._config.postgresql is not None:
            if self._pg is None:
                where = self._config.postgresql
                self._pg = PostgresBackend.open(where.dsn, schema=where.schema_name, migrate=False)
            return self._pg.log_store
        old, self._sqlite = self._sqlite, SQLiteLogReader(self._dir / DB_FILE)
        if old is not None:  # a new connection: the -wal may have appeared or gone since
            with suppress(Exception):
                old.close()
        return self._sqlite

    def size(self) -> int:
        """The entries the checkpoint verified at the last :meth:`refresh` covers."""
        return self._source.size()

    def read(self, start: int, end: int) -> list[Event]:
        """The events of entries ``[start, end)`` (see :class:`LogEventSource`).

        Raises:
            IntegrityError: an entry does not verify; no event is made of it.
            StorageError: the database cannot be read.
        """
        return self._source.read(start, end)
