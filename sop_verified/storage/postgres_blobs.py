"""Small content-addressed blobs in PostgreSQL (the blob role, ADR 0007, ADR 0009).

As in SQLite (:mod:`sop_verified.storage.sqlite_blobs`): a blob is kept in
``persist_inline`` (a BYTEA column, so replicas on other machines read the
same bytes) under the index of the effect entry that first stored it, and is
found through the persistence index's effects. Blobs are written only as part
of a batch's unit of work (:func:`store_blobs`, inside the log's transaction);
:class:`PostgresBlobs` reads them and drops the copy of a purged one.

Replicas: a batch that keeps blobs holds each of their scopes' advisory lock
(:func:`~sop_verified.storage.postgres_content.scope_lock`) shared before it
looks for a row to reuse, and a drop holds it alone before it looks for a
live object: the drop either commits before the batch looks (the batch then
stores its own row) or sees the batch's effects (and keeps the row). Without
it a drop on one replica could delete the row a batch on another had just
chosen to reuse, leaving a live object without its bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

from sop_verified.storage.postgres_content import scope_lock
from sop_verified.storage.postgres_db import Cursor, PostgresDB
from sop_verified.storage.unit_of_work import KeptBlob

__all__ = ["PostgresBlobs", "store_blobs"]

_NEW = (
    "unnest(%s::bigint[], %s::text[], %s::text[], %s::bytea[])"
    " AS n(effect_index, scope, stored, data)"
)

_LIVE = (
    "outcome = 'written' AND NOT EXISTS "
    "(SELECT 1 FROM persist_tombstones t WHERE t.effect_index = e.effect_index)"
)


def store_blobs(cur: Cursor, blobs: Sequence[KeptBlob]) -> None:
    """Keep small blobs once per ``(scope, stored)`` (a unit of work's, inside its transaction).

    What SQLite's ``persist_inline_in`` view does row by row, in two statements:
    a written effect that already holds the same ``(scope, stored)`` gets these
    bytes (equal by the digest in the name, so this only repairs a tampered
    row) and no row is added; otherwise a row is added under this effect's
    index. A unit holds one blob per ``(scope, stored)``
    (:func:`~sop_verified.storage.unit_of_work.blob_rows`), so handling them as
    a set is handling them one by one. Runs after the batch's effects were
    indexed.
    """
    if not blobs:
        return
    scopes = sorted({b.scope for b in blobs})
    cur.execute(  # before looking for a row to reuse (see the module)
        f"SELECT pg_advisory_xact_lock_shared({scope_lock('s')})"  # noqa: S608 - constant
        " FROM unnest(%s::text[]) AS s",
        (scopes,),
    )
    columns = (
        [b.effect_index for b in blobs],
        [b.scope for b in blobs],
        [b.stored for b in blobs],
        [b.data for b in blobs],
    )
    cur.execute(
        f"UPDATE persist_inline i SET data = n.data FROM {_NEW}"  # noqa: S608 - constant fragments
        " WHERE i.data IS DISTINCT FROM n.data AND i.effect_index IN (SELECT e.effect_index"
        " FROM persist_effects e WHERE e.scope = n.scope AND e.stored = n.stored"
        " AND e.outcome = 'written' AND e.effect_index <> n.effect_index)",
        columns,
    )
    cur.execute(
        f"INSERT INTO persist_inline (effect_index, data) SELECT n.effect_index, n.data FROM {_NEW}"  # noqa: S608 - constant fragments
        " WHERE NOT EXISTS (SELECT 1 FROM persist_effects e JOIN persist_inline i"
        " ON i.effect_index = e.effect_index"
        " WHERE e.scope = n.scope AND e.stored = n.stored AND e.outcome = 'written')",
        columns,
    )


class PostgresBlobs:
    """The small blobs of one schema (a ``BlobStore``)."""

    def __init__(self, db: PostgresDB) -> None:
        """Use ``db``'s pool."""
        self._db = db

    def blob(self, scope: str, stored: str) -> bytes | None:
        """The bytes kept in the database for ``stored`` in ``scope`` (small blobs), or None."""
        rows = self._db.query(
            "SELECT i.data FROM persist_effects e JOIN persist_inline i"
            " ON i.effect_index = e.effect_index"
            " WHERE e.scope = %s AND e.stored = %s AND e.outcome = 'written' LIMIT 1",
            (scope, stored),
        )
        return bytes(rows[0][0]) if rows else None

    def drop_blob(self, scope: str, stored: str) -> bool:
        """Delete the database copy of ``stored`` unless a live object uses it (one transaction).

        Returns:
            True when a row was deleted.
        """
        with self._db.tx() as cur:
            cur.execute(f"SELECT pg_advisory_xact_lock({scope_lock()})", (scope,))  # see the module
            cur.execute(
                "DELETE FROM persist_inline WHERE effect_index IN (SELECT e.effect_index"  # noqa: S608 - constant fragments
                " FROM persist_effects e WHERE e.scope = %s AND e.stored = %s"
                " AND e.outcome = 'written') AND NOT EXISTS (SELECT 1 FROM persist_effects e"
                f" WHERE e.scope = %s AND e.stored = %s AND {_LIVE})",
                (scope, stored, scope, stored),
            )
            return cur.rowcount > 0
