"""Activated policy sets in SQLite (the policy role): insert-only, the latest is active."""

from __future__ import annotations

from sop_verified.storage.sqlite_db import SQLiteDB

__all__ = ["POLICY_SCHEMA", "SQLitePolicies"]

POLICY_SCHEMA = """
CREATE TABLE IF NOT EXISTS policy_sets (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    digest TEXT NOT NULL,
    document BLOB NOT NULL,
    activated_at INTEGER NOT NULL
);
"""
"""DDL of the policy-set table."""


class SQLitePolicies:
    """The policy store of one database (a ``PolicyStore``)."""

    def __init__(self, db: SQLiteDB) -> None:
        """Use ``db``'s connections (its schema holds :data:`POLICY_SCHEMA`)."""
        self._db = db

    def save_policy_set(self, digest: str, document: bytes, activated_at: int) -> None:
        """Record a policy-set activation."""
        with self._db.tx() as db:
            db.execute(
                "INSERT INTO policy_sets (digest, document, activated_at) VALUES (?, ?, ?)",
                (digest, document, activated_at),
            )

    def load_active_policy_set(self) -> tuple[str, bytes] | None:
        """The latest activation, or None."""
        rows = self._db.query("SELECT digest, document FROM policy_sets ORDER BY seq DESC LIMIT 1")
        return None if not rows else (str(rows[0][0]), bytes(rows[0][1]))
