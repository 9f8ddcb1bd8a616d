"""The derived state of a SQLite database, read without writing a byte: for inspection.

``sop cap list`` and ``sop status`` read capabilities, revocations and the
active policy set the way boot trusts them (INV-11): in one read transaction,
the state seal is checked against every derived table and against the log's
head, then the rows are read, so nothing shown escaped the check. The file is
opened with :func:`~sop_verified.storage.sqlite_db.read_only_uri`: nothing in
its directory is created, locked or changed, and a copy whose files cannot be
written opens too.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sop_verified.errors import IntegrityError, StorageError
from sop_verified.storage.seal_layout import SEALED
from sop_verified.storage.sqlite_db import connect_read_only
from sop_verified.storage.sqlite_seal import check_state
from sop_verified.storage.state_seal import SealKeeper
from sop_verified.storage.state_view import StateView, read_view

__all__ = ["SQLiteStateReader"]


class SQLiteStateReader:
    """One read-only connection to a SOP database, for :meth:`read_state` and :meth:`self_test`."""

    def __init__(self, path: Path, state_key: bytes) -> None:
        """Open ``path`` read-only.

        Args:
            path: the database file.
            state_key: the capability MAC key the state keys derive from.

        Raises:
            StorageError: the file is missing or is not a SQLite database.
        """
        self.path = path
        self._keeper = SealKeeper(state_key, tuple(SEALED))
        self._db = connect_read_only(path, "to read its state")

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def self_test(self) -> None:
        """SQLite's quick integrity check, read-only.

        Raises:
            StorageError: the check does not say ``ok``, or the file cannot be read.
        """
        try:
            rows = self._db.execute("PRAGMA quick_check").fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read `{self.path}`: {exc}") from None
        if [tuple(r) for r in rows] != [("ok",)]:
            raise StorageError(f"sqlite integrity check of `{self.path}` failed: {rows[:3]}")

    def read_state(self, log_size: int, config: str | None) -> StateView:
        """Check the state seal, then read the view, in one snapshot (INV-11).

        Args:
            log_size: the size the opened log authenticated; the seal is checked
                against the head in this snapshot, which a live writer may have
                moved past it, never behind it.
            config: the configuration's digest to hold against the accepted one.

        Returns:
            The checked view.

        Raises:
            IntegrityError: the seal, a derived table or the configuration does not
                check, or the log holds fewer entries than its signed checkpoint.
            StorageError: the database cannot be read.
        """
        try:
            self._db.execute("BEGIN")  # one snapshot: a live writer's commit cannot split it
            try:
                ((head,),) = self._db.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM log_entries")
                if type(head) is not int or head < log_size:
                    raise IntegrityError(
                        f"the log table holds `{head}` entries, fewer than the `{log_size}`"
                        " its signed checkpoint covers"
                    )
                check_state(self._db, self._keeper, head, config)  # spec: INV-11
                return read_view(lambda sql: self._db.execute(sql).fetchall(), head)
            finally:
                self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read the state of `{self.path}`: {exc}") from None
