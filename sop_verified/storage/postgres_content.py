"""The bytes of every scope in PostgreSQL, so that every replica reads what any of them wrote.

What the SQLite backend keeps as files under ``<data>/scopes/<root>``
(:class:`~sop_verified.storage.blobs.ScopeDir`) the PostgreSQL backend keeps
in ``persist_content``: one row per ``(scope, stored path)``, the bytes in a
BYTEA column (up to the scope's ``max_blob_bytes``). :class:`PostgresScopeContent`
is the twin of ``ScopeDir`` with the same guarantees, by other means:

- *durable and whole*: a write is one transaction, durable at ``COMMIT``
  (``synchronous_commit`` on); before it the row does not exist, so nothing
  is ever half-written and there is nothing to sweep at boot (a file write
  needs its temporary file, fsync and rename for this);
- *exclusive*: a write-once name is inserted ``ON CONFLICT DO NOTHING`` on the
  primary key, so of two replicas writing one name only one succeeds (a file
  is published with ``link``, which only one machine's disk can arbitrate);
- *verified*: a read returns the bytes only if their SHA-256 is the one
  expected (the effect entry's, proved in the log), and never more than the
  size asked for;
- *confined*: names are checked with :mod:`sop_verified.storage.blob_names`,
  as files are (INV-4), and a scope reads and writes its own rows only.

Like the files, ``persist_content`` is outside the state seal (INV-11): it
is not derived from the log (its bytes are not in any entry), it is read
only against the digest an effect entry logs, and an edited, deleted or
planted row is caught on the read it would serve, as a file is.

Retention across replicas: a replica's scope locks do not reach another
process, so a removal and a write of the same content-addressed blob are
ordered here instead. A write's digest check and its write hold a shared
transaction-level advisory lock on the scope, a removal the exclusive one;
the removal deletes the row only if no live object uses it and no pending
decision is bound to its digest. A write that found the blob present has its
decision pending until its effect entry makes the object live, so the
removal, which takes its snapshot after the write's check, sees one or the
other and keeps the row.
"""

from __future__ import annotations

import hashlib
import re

from sop_verified.errors import IntegrityError, PersistenceError
from sop_verified.storage.blob_names import split_relative
from sop_verified.storage.postgres_db import PostgresDB

__all__ = ["PostgresScopeContent", "scope_lock"]


def scope_lock(scope: str = "%s") -> str:
    """The advisory lock key of the scope the SQL expression ``scope`` names, in this schema.

    One scope's stored bytes are written under it shared and removed under it alone,
    each for its transaction, by every replica of the schema.
    """
    return f"hashtextextended('sop-scope:' || current_schema() || ':' || {scope}, 0)"


_CAS = re.compile(r"sha256/[0-9a-f]{2}/([0-9a-f]{64})")
_SHARED = f"SELECT pg_advisory_xact_lock_shared({scope_lock()})"
_ALONE = f"SELECT pg_advisory_xact_lock({scope_lock()})"
_LIVE = (
    "e.outcome = 'written' AND NOT EXISTS "
    "(SELECT 1 FROM persist_tombstones t WHERE t.effect_index = e.effect_index)"
)
_INSERT = "INSERT INTO persist_content (scope, stored, data) VALUES (%s, %s, %s)"
_INSERT_ONCE = _INSERT + " ON CONFLICT (scope, stored) DO NOTHING"
_REPLACE = _INSERT + " ON CONFLICT (scope, stored) DO UPDATE SET data = excluded.data"
_REMOVE = (
    "DELETE FROM persist_content c WHERE c.scope = %s AND c.stored = %s"  # noqa: S608 - constants
    " AND NOT EXISTS (SELECT 1 FROM persist_effects e"
    f" WHERE e.scope = c.scope AND e.stored = c.stored AND {_LIVE})"
    " AND (%s::bytea IS NULL OR NOT EXISTS"
    " (SELECT 1 FROM persist_pending p WHERE position(%s::bytea IN p.request) > 0))"
)


class PostgresScopeContent:
    """One scope's bytes as rows of ``persist_content`` (a ``ScopeContent``)."""

    def __init__(self, db: PostgresDB, scope: str) -> None:
        """Keep scope ``scope``'s bytes in ``db``'s schema.

        Args:
            db: the schema's connections.
            scope: the scope's name (its rows are keyed by it, as the index's are).
        """
        self._db = db
        self._scope = scope

    def read(self, rel: str, *, max_bytes: int, expected_hex: str) -> bytes:
        """The bytes at ``rel``, once their SHA-256 is ``expected_hex``.

        Raises:
            ConfinementError: a bad name.
            PersistenceError: nothing is stored there (``not_found``), or more than
                ``max_bytes`` (``too_large``; the bytes are not even fetched).
            IntegrityError: the bytes have another digest.
            StorageError: the read failed.
        """
        split_relative(rel)  # spec: INV-4 — the names a scope directory accepts, nothing else
        rows = self._db.query(
            "SELECT length(data), CASE WHEN length(data) <= %s THEN data END"
            " FROM persist_content WHERE scope = %s AND stored = %s",
            (max_bytes, self._scope, rel),
            binary=True,
        )
        data = self._fetched(rows, rel, max_bytes)
        if data is None:
            raise PersistenceError(f"no stored object at `{rel}`", code="not_found")
        found = hashlib.sha256(data).hexdigest()
        if found != expected_hex:  # spec: INV-4 — verified on every read, never returned
            raise IntegrityError(
                f"stored object `{rel}` has digest `sha256:{found}`, "
                f"expected `sha256:{expected_hex}`"
            )
        return data

    def digest(self, rel: str, *, max_bytes: int) -> str | None:
        """The SHA-256 (hex) of the bytes at ``rel``, or None when nothing is there.

        Computed by the server from the stored bytes (never read from a column
        that could say otherwise), under the scope's shared lock (see the module).

        Raises:
            ConfinementError: a bad name.
            PersistenceError: more than ``max_bytes`` are stored (``too_large``).
            StorageError: the read failed.
        """
        split_relative(rel)
        with self._db.unsealed_tx() as cur:
            cur.execute(_SHARED, (self._scope,))
            rows = cur.execute(
                "SELECT length(data), CASE WHEN length(data) <= %s THEN sha256(data) END"
                " FROM persist_content WHERE scope = %s AND stored = %s",
                (max_bytes, self._scope, rel),
            ).fetchall()
        found = self._fetched(rows, rel, max_bytes)
        return None if found is None else found.hex()

    def write(self, rel: str, data: bytes, *, tag: str, exclusive: bool) -> None:
        """Durably store ``data`` at ``rel`` in one transaction: all of it, or nothing.

        Args:
            rel: the stored path.
            data: the bytes.
            tag: not used (there is no temporary file to name).
            exclusive: refuse an existing row (``exists``) instead of replacing it.

        Raises:
            ConfinementError: a bad name.
            PersistenceError: ``exclusive`` and the name exists (``exists``).
            StorageError: the write failed (nothing was stored).
        """
        del tag
        split_relative(rel)  # spec: INV-4
        with self._db.unsealed_tx() as cur:
            cur.execute(_SHARED, (self._scope,))
            cur.execute(_INSERT_ONCE if exclusive else _REPLACE, (self._scope, rel, bytes(data)))
            stored = cur.rowcount == 1
        if not stored:
            raise PersistenceError(
                f"`{rel}` already exists and is never overwritten", code="exists"
            )

    def unlink(self, rel: str) -> bool:
        """Remove the row of ``rel`` unless a live object or a pending decision still needs it.

        Returns:
            True when a row was removed.

        Raises:
            ConfinementError: a bad name.
            StorageError: the removal failed.
        """
        split_relative(rel)
        cas = _CAS.fullmatch(rel)
        needle = None if cas is None else f'"content_digest":"sha256:{cas.group(1)}"'.encode()
        with self._db.unsealed_tx() as cur:
            cur.execute(_ALONE, (self._scope,))  # its snapshot comes after every write's check
            cur.execute(_REMOVE, (self._scope, rel, needle, needle))
            return cur.rowcount > 0

    def sweep_temps(self, rel_dir: str, tag: str | None = None) -> int:
        """Nothing temporary is ever left (a write is one transaction): 0."""
        del rel_dir, tag
        return 0

    def close(self) -> None:
        """Nothing to release (the backend holds the connections)."""

    @staticmethod
    def _fetched(rows: list[tuple[object, ...]], rel: str, max_bytes: int) -> bytes | None:
        """The second column of the one row, or None when there is no row."""
        if not rows:
            return None
        size, value = rows[0]
        if value is None:
            raise PersistenceError(
                f"stored object `{rel}` is larger than {max_bytes} bytes ({size})",
                code="too_large",
            )
        if not isinstance(value, bytes | bytearray | memoryview):
            raise IntegrityError(f"stored object `{rel}` is not bytes")
        return bytes(value)
