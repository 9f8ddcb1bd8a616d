"""A data directory's log opened to read, without booting SOP and without writing a byte.

What the inspection commands share (``sop events tail``, ``sop log show``,
``sop log prove``, ``sop log checkpoint``, ``sop cap list``): the SQLite
database is opened read-only without creating or locking anything
(:func:`~sop_verified.storage.sqlite_db.read_only_uri`), a PostgreSQL schema
is only queried. The log is opened without its secret key, its latest
checkpoint verified against the public checkpoint key
(``keys/checkpoint.vkey``) and the stored tail checked against it. An entry is
read through the authenticated path (:meth:`DataDirLog.entry`): proved
included under that checkpoint before it is parsed. :meth:`DataDirLog.refresh`
opens the log again to see new entries, and refuses a log that no longer
extends the checkpoint it last verified: a log cut back or replaced under a
follower is an :class:`~sop_verified.errors.IntegrityError`, never a silent
restart.
"""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path
from typing import Any

from sop_verified.core.persistence.logged import proved_entry
from sop_verified.errors import ConfigError
from sop_verified.nexus.anchor import ANCHOR_NAME, check_anchor
from sop_verified.nexus.config import SOPConfig, load_config
from sop_verified.nexus.keys import CHECKPOINT_VKEY, read_vkey
from sop_verified.storage.postgres import PostgresBackend
from sop_verified.storage.sqlite_log import SQLiteLogReader
from sop_verified.tools.signed_note import Verifier
from sop_verified.tools.tlog import TransparencyLog
from sop_verified.tools.tlog_store import LogStore

__all__ = ["DB_FILE", "DataDirLog"]

DB_FILE = "sop.db"
"""The database file in a data directory (``nexus.backends.DB_NAME``)."""


class DataDirLog:
    """The log of a data directory, read-only. Use it as a context manager."""

    def __init__(self, data_dir: Path, *, dsn: str | None = None) -> None:
        """Read ``data_dir``'s configuration; nothing is opened until :meth:`refresh`.

        Args:
            data_dir: the data directory.
            dsn: another address for its PostgreSQL database (as ``sop serve --dsn``).

        Raises:
            ConfigError: no configuration, or no database in a SQLite data directory.
        """
        self.data_dir = data_dir
        self.config: SOPConfig = load_config(data_dir)
        self._dsn = dsn
        if self.config.postgresql is None and not (data_dir / DB_FILE).is_file():
            raise ConfigError(
                f"no database in `{data_dir}`", accepted="a data directory made by `sop init`"
            )
        self._pg: PostgresBackend | None = None
        self._sqlite: SQLiteLogReader | None = None
        self._log: TransparencyLog | None = None
        self._trusted: list[Verifier] = []

    def __enter__(self) -> DataDirLog:
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
        return self.config.origin

    @property
    def log(self) -> TransparencyLog:
        """The opened log (opened by :meth:`refresh` on first use).

        Raises:
            as :meth:`refresh`.
        """
        if self._log is None:
            self.refresh()
        assert self._log is not None  # refresh sets it or raises
        return self._log

    def refresh(self) -> TransparencyLog:
        """Open the log again, as it is now.

        Returns:
            The log; its checkpoint is the latest, verified.

        Raises:
            IntegrityError: the stored tail does not match the latest checkpoint,
                or the log does not extend the checkpoint verified before.
            VerificationError: the latest checkpoint does not verify.
            ConfigError: the public checkpoint key cannot be read.
            StorageError: the database cannot be read.
        """
        vkey = read_vkey(self.data_dir / CHECKPOINT_VKEY)  # a rotation announces the next key
        if vkey not in self._trusted:
            self._trusted.append(vkey)
        held = None if self._log is None else self._log.checkpoint_note
        log = TransparencyLog(
            self._store(), origin=self.config.origin, signer=None, trusted=self._trusted
        )
        if held is not None:
            log.check_extends(held)  # spec: INV-5 — never a log cut back under a follower
        self._log = log
        return log

    def _store(self) -> LogStore:
        if self.config.postgresql is not None:
            if self._pg is None:
                where = self.config.postgresql
                dsn = self._dsn or where.dsn
                self._pg = PostgresBackend.open(dsn, schema=where.schema_name, migrate=False)
            return self._pg.log_store
        old, self._sqlite = self._sqlite, SQLiteLogReader(self.data_dir / DB_FILE)
        if old is not None:  # a new connection: the -wal may have appeared or gone since
            with suppress(Exception):
                old.close()
        return self._sqlite

    def check_anchor(self) -> None:
        """Refuse a log cut back behind its rollback anchor, or one that lost it (as boot does).

        Raises:
            IntegrityError: the anchor is missing while the log has checkpoints, does not
                verify, or the log does not extend it.
        """
        check_anchor(self.log, self.data_dir / ANCHOR_NAME)  # spec: INV-5

    def signed_size(self) -> int:
        """How many entries the verified checkpoint covers (0: none yet)."""
        checkpoint = self.log.checkpoint
        return 0 if checkpoint is None else checkpoint.size

    def entry(self, index: int) -> dict[str, Any]:
        """The entry at ``index``, parsed, once proved included under the verified checkpoint.

        Raises:
            IntegrityError: no checkpoint covers ``index``, or the stored entry is not the
                one the signed tree holds there (or not a JSON object).
            StorageError: the database cannot be read.
        """
        return proved_entry(self.log, index, what="the entry")  # spec: INV-5
