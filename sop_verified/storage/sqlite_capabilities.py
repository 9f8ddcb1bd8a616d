"""Admitted capabilities and revocations in SQLite (the capability role).

Capabilities are write-once by id (a second insert fails on the UNIQUE
constraint and raises StorageError); revocations are idempotent, the first
time wins. Rows are only ever inserted (INV-5).
"""

from __future__ import annotations

from sop_verified.storage.sqlite_db import SQLiteDB

__all__ = ["CAPABILITY_SCHEMA", "SQLiteCapabilities"]

CAPABILITY_SCHEMA = """
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
"""
"""DDL of the capability and revocation tables."""


class SQLiteCapabilities:
    """The capability store of one database (a ``CapabilityStore``)."""

    def __init__(self, db: SQLiteDB) -> None:
        """Use ``db``'s connections (its schema holds :data:`CAPABILITY_SCHEMA`)."""
        self._db = db

    def save_capability(self, cap_id: str, parent_id: str | None, claims: bytes) -> None:
        """Store an admitted capability (write-once by id).

        Raises:
            StorageError: ``cap_id`` is already stored, or the write failed.
        """
        with self._db.tx() as db:
            db.execute(
                "INSERT INTO capabilities (id, parent_id, claims) VALUES (?, ?, ?)",
                (cap_id, parent_id, claims),
            )

    def load_capabilities(self) -> list[tuple[str, str | None, bytes]]:
        """All admitted capabilities in admission order."""
        rows = self._db.query("SELECT id, parent_id, claims FROM capabilities ORDER BY seq")
        return [(str(r[0]), None if r[1] is None else str(r[1]), bytes(r[2])) for r in rows]

    def save_revocation(self, cap_id: str, at: int) -> None:
        """Record a revocation, once (INV-11).

        SOP writes each revocation row once, so a row already there was put in
        by someone else; ignoring it would let him delete it later with the
        seal none the wiser. The write is refused instead.

        Raises:
            StorageError: ``cap_id`` already has a revocation row, or the write failed.
        """
        with self._db.tx() as db:
            db.execute("INSERT INTO revocations (id, at) VALUES (?, ?)", (cap_id, at))

    def load_revocations(self) -> dict[str, int]:
        """All revocations, id to time."""
        rows = self._db.query("SELECT id, at FROM revocations")
        return {str(r[0]): int(r[1]) for r in rows}
