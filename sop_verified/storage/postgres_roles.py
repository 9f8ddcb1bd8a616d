"""Capabilities, policy sets, verdicts and the protocol record index in PostgreSQL.

The same rules as their SQLite counterparts (``sqlite_capabilities``,
``sqlite_policies``, ``sqlite_verdicts``, ``sqlite_protocols``):

- capabilities are write-once by id and revocations written once (a second
  row is refused: a row already there was not SOP's, INV-11);
- the latest activated policy set is the active one;
- verdicts are write-once (INV-3): :meth:`PostgresVerdicts.put_once` never
  replaces a record, and triggers refuse UPDATE, DELETE and TRUNCATE;
- protocol records are insert-only, read with their payload from the log;
  the record index's high-water mark never goes down.

Every write is its own transaction, sealed at commit
(:mod:`sop_verified.storage.postgres_seal`); every failure is a StorageError.
"""

from __future__ import annotations

from sop_verified.errors import StorageError
from sop_verified.storage.postgres_db import Cursor, PostgresDB

__all__ = ["PostgresCapabilities", "PostgresPolicies", "PostgresRecordIndex", "PostgresVerdicts"]

_MARK = "indexed_to"


class PostgresCapabilities:
    """The capability store of one schema (a ``CapabilityStore``)."""

    def __init__(self, db: PostgresDB) -> None:
        """Use ``db``'s pool."""
        self._db = db

    def save_capability(self, cap_id: str, parent_id: str | None, claims: bytes) -> None:
        """Store an admitted capability (write-once by id).

        Raises:
            StorageError: ``cap_id`` is already stored, or the write failed.
        """
        with self._db.tx() as cur:
            cur.execute(
                "INSERT INTO capabilities (id, parent_id, claims) VALUES (%s, %s, %s)",
                (cap_id, parent_id, claims),
            )

    def load_capabilities(self) -> list[tuple[str, str | None, bytes]]:
        """All admitted capabilities in admission order."""
        rows = self._db.query("SELECT id, parent_id, claims FROM capabilities ORDER BY seq")
        return [(str(r[0]), None if r[1] is None else str(r[1]), bytes(r[2])) for r in rows]

    def save_revocation(self, cap_id: str, at: int) -> None:
        """Record a revocation, once (INV-11: a row already there was put in by someone else).

        Raises:
            StorageError: ``cap_id`` already has a revocation row, or the write failed.
        """
        with self._db.tx() as cur:
            cur.execute("INSERT INTO revocations (id, at) VALUES (%s, %s)", (cap_id, at))

    def load_revocations(self) -> dict[str, int]:
        """All revocations, id to time."""
        rows = self._db.query("SELECT id, at FROM revocations")
        return {str(r[0]): int(r[1]) for r in rows}


class PostgresPolicies:
    """The policy store of one schema (a ``PolicyStore``)."""

    def __init__(self, db: PostgresDB) -> None:
        """Use ``db``'s pool."""
        self._db = db

    def save_policy_set(self, digest: str, document: bytes, activated_at: int) -> None:
        """Record a policy-set activation."""
        with self._db.tx() as cur:
            cur.execute(
                "INSERT INTO policy_sets (digest, document, activated_at) VALUES (%s, %s, %s)",
                (digest, document, activated_at),
            )

    def load_active_policy_set(self) -> tuple[str, bytes] | None:
        """The latest activation, or None."""
        rows = self._db.query("SELECT digest, document FROM policy_sets ORDER BY seq DESC LIMIT 1")
        return None if not rows else (str(rows[0][0]), bytes(rows[0][1]))


class PostgresVerdicts:
    """The verdict store of one schema (a ``VerdictStore``)."""

    def __init__(self, db: PostgresDB) -> None:
        """Use ``db``'s pool."""
        self._db = db

    def get(self, digest: str) -> bytes | None:
        """The verdict record stored under ``digest``, or None.

        Raises:
            StorageError: the read failed, or the stored record is not bytes.
        """
        rows = self._db.query("SELECT record FROM verdicts WHERE digest = %s", (digest,))
        if not rows:
            return None
        if not isinstance(rows[0][0], bytes):  # spec: INV-3 — a record is a canonical blob
            raise StorageError(f"the verdict record under `{digest}` is not a blob; it was altered")
        return bytes(rows[0][0])

    def put_once(self, digest: str, record: bytes) -> bytes:
        """Store ``record`` unless ``digest`` has one; return the record now stored (INV-3)."""
        with self._db.tx() as cur:
            cur.execute(
                "INSERT INTO verdicts (digest, record) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (digest, record),
            )
            row = cur.execute("SELECT record FROM verdicts WHERE digest = %s", (digest,)).fetchone()
        if row is None:
            raise StorageError(f"the verdict under `{digest}` vanished while it was stored")
        return bytes(row[0])

    def digests(self) -> list[str]:
        """Every digest with a recorded verdict, sorted (by code point, as Python sorts)."""
        rows = self._db.query('SELECT digest FROM verdicts ORDER BY digest COLLATE "C"')
        return [str(r[0]) for r in rows]


class PostgresRecordIndex:
    """The protocol record index of one schema (a ``RecordIndex``)."""

    def __init__(self, db: PostgresDB) -> None:
        """Use ``db``'s pool."""
        self._db = db

    def add(self, index: int, kind: str, receipt: bytes, *, indexed_to: int) -> None:
        """Index one record, once (a row already there was not SOP's), and raise the mark.

        Raises:
            StorageError: ``index`` is already indexed, or the write failed.
        """
        with self._db.tx() as cur:
            cur.execute(
                "INSERT INTO protocol_records (log_index, kind, receipt) VALUES (%s, %s, %s)",
                (index, kind, receipt),
            )
            _mark(cur, indexed_to)

    def indexed_to(self) -> int:
        """Every record below this log index is indexed."""
        rows = self._db.query("SELECT value FROM protocol_state WHERE key = %s", (_MARK,))
        return int(rows[0][0]) if rows else 0

    def set_indexed_to(self, index: int) -> None:
        """Raise the mark to ``index`` (never lowers it)."""
        with self._db.tx() as cur:
            _mark(cur, index)

    def records(self) -> list[tuple[int, str, bytes, bytes]]:
        """Every indexed record with its payload from the log, in log order.

        Raises:
            StorageError: the read failed, or an indexed entry is missing from the log.
        """
        rows = self._db.query(
            "SELECT r.log_index, r.kind, e.payload, r.receipt FROM protocol_records r"
            " LEFT JOIN log_entries e ON e.idx = r.log_index ORDER BY r.log_index"
        )
        missing = [int(r[0]) for r in rows if r[2] is None]
        if missing:
            raise StorageError(f"protocol records `{missing[:5]}` are missing from the log")
        return [(int(r[0]), str(r[1]), bytes(r[2]), bytes(r[3])) for r in rows]


def _mark(cur: Cursor, index: int) -> None:
    cur.execute(
        "INSERT INTO protocol_state (key, value) VALUES (%s, %s)"
        " ON CONFLICT (key) DO UPDATE SET value = GREATEST(protocol_state.value, excluded.value)",
        (_MARK, index),
    )
