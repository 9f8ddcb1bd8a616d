"""Write-once proof verdicts in SQLite (the verdict role, INV-3).

Triggers refuse any UPDATE or DELETE of a stored verdict; :meth:`put_once`
never replaces a record and hands back the one stored, for the caller to compare.
"""

from __future__ import annotations

from sop_verified.errors import StorageError
from sop_verified.storage.sqlite_db import SQLiteDB

__all__ = ["VERDICT_SCHEMA", "SQLiteVerdicts"]

VERDICT_SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
    digest TEXT PRIMARY KEY,
    record BLOB NOT NULL
);
CREATE TRIGGER IF NOT EXISTS verdicts_no_update BEFORE UPDATE ON verdicts
BEGIN SELECT RAISE(ABORT, 'proof verdicts are write-once'); END;
CREATE TRIGGER IF NOT EXISTS verdicts_no_delete BEFORE DELETE ON verdicts
BEGIN SELECT RAISE(ABORT, 'proof verdicts are write-once'); END;
"""
"""DDL of the verdict table and its write-once triggers."""


class SQLiteVerdicts:
    """The verdict store of one database (a ``VerdictStore``)."""

    def __init__(self, db: SQLiteDB) -> None:
        """Use ``db``'s connections (its schema holds :data:`VERDICT_SCHEMA`)."""
        self._db = db

    def get(self, digest: str) -> bytes | None:
        """The verdict record stored under ``digest``, or None.

        Raises:
            StorageError: the read failed, or the stored record is not a blob.
        """
        rows = self._db.query("SELECT record FROM verdicts WHERE digest = ?", (digest,))
        if not rows:
            return None
        if not isinstance(rows[0][0], bytes):  # spec: INV-3 — a record is a canonical blob
            raise StorageError(f"the verdict record under `{digest}` is not a blob; it was altered")
        return bytes(rows[0][0])

    def put_once(self, digest: str, record: bytes) -> bytes:
        """Store ``record`` unless ``digest`` has one; return the record now stored."""
        with self._db.tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO verdicts (digest, record) VALUES (?, ?)", (digest, record)
            )
            row = db.execute("SELECT record FROM verdicts WHERE digest = ?", (digest,)).fetchone()
        return bytes(row[0])

    def digests(self) -> list[str]:
        """Every digest with a recorded verdict, sorted."""
        return [str(r[0]) for r in self._db.query("SELECT digest FROM verdicts ORDER BY digest")]
