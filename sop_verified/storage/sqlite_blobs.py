"""Small content-addressed blobs in SQLite (the blob role, ADR 0007, ADR 0009).

A blob is kept in ``persist_inline`` under the index of the effect entry that
first stored it, and found through the persistence index's effects. Blobs are
written only as part of a batch's unit of work (:func:`store_blobs`, inside
the log's transaction); :class:`SQLiteBlobs` reads them and drops the copy of
a purged one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from sop_verified.storage.sqlite_db import SQLiteDB, insert_rows
from sop_verified.storage.unit_of_work import KeptBlob

__all__ = ["INLINE_SCHEMA", "SQLiteBlobs", "store_blobs"]

INLINE_SCHEMA = """
CREATE TABLE IF NOT EXISTS persist_inline (
    effect_index INTEGER PRIMARY KEY,
    data BLOB NOT NULL
);
CREATE VIEW IF NOT EXISTS persist_inline_in (effect_index, scope, stored, data) AS
    SELECT NULL, NULL, NULL, NULL WHERE 0;
CREATE TRIGGER IF NOT EXISTS persist_inline_in_insert INSTEAD OF INSERT ON persist_inline_in
BEGIN
    UPDATE persist_inline SET data = NEW.data
        WHERE data IS NOT NEW.data AND effect_index IN (SELECT e.effect_index
            FROM persist_effects e WHERE e.scope = NEW.scope AND e.stored = NEW.stored
            AND e.outcome = 'written' AND e.effect_index <> NEW.effect_index);
    INSERT INTO persist_inline (effect_index, data) SELECT NEW.effect_index, NEW.data
        WHERE NOT EXISTS (SELECT 1 FROM persist_effects e JOIN persist_inline i
            ON i.effect_index = e.effect_index
            WHERE e.scope = NEW.scope AND e.stored = NEW.stored AND e.outcome = 'written');
END;
"""
"""DDL of the small-blob table and the view it is written through (after ``PERSIST_SCHEMA``).

Small content-addressed blobs (ADR 0007) are kept in ``persist_inline``, once
per ``(scope, stored)``, under the index of the effect that first stored them
(ADR 0009): an integer key that grows with the log, so storing a blob appends
to the table's B-tree instead of inserting into an index at a random digest
(which cost a 4 KiB page in the WAL, and again at the checkpoint, per write).
They are found through ``persist_effects_by_stored``. A blob is stored through
the view ``persist_inline_in``: if a written effect already holds the same
``(scope, stored)``, its row gets these bytes (equal, by the digest in the key,
so this only ever repairs a tampered row) and no row is added; otherwise a row
is added under this effect's index.
"""

_LIVE = (
    "outcome = 'written' AND NOT EXISTS "
    "(SELECT 1 FROM persist_tombstones t WHERE t.effect_index = e.effect_index)"
)


def store_blobs(db: sqlite3.Connection, blobs: Sequence[KeptBlob]) -> None:
    """Keep small blobs once per ``(scope, stored)`` (a unit of work's, inside its transaction).

    Runs inside the batch's transaction, after its effects were indexed (the
    view's trigger looks for an effect that already holds the same blob).
    """
    rows = [(b.effect_index, b.scope, b.stored, b.data) for b in blobs]
    insert_rows(db, "INSERT INTO persist_inline_in (effect_index, scope, stored, data)", rows, 4)


class SQLiteBlobs:
    """The small blobs of one database (a ``BlobStore``)."""

    def __init__(self, db: SQLiteDB) -> None:
        """Use ``db``'s connections (its schema holds :data:`INLINE_SCHEMA`)."""
        self._db = db

    def blob(self, scope: str, stored: str) -> bytes | None:
        """The bytes kept in the database for ``stored`` in ``scope`` (small blobs), or None."""
        rows = self._db.read_query(
            "SELECT i.data FROM persist_effects e JOIN persist_inline i"
            " ON i.effect_index = e.effect_index"
            " WHERE e.scope = ? AND e.stored = ? AND e.outcome = 'written' LIMIT 1",
            (scope, stored),
        )
        if not rows:
            return None
        data = rows[0][0]
        return data if isinstance(data, bytes) else None

    def drop_blob(self, scope: str, stored: str) -> bool:
        """Delete the database copy of ``stored`` unless a live object uses it (one transaction).

        Returns:
            True when a row was deleted.
        """
        with self._db.tx() as db:
            cur = db.execute(
                "DELETE FROM persist_inline WHERE effect_index IN (SELECT e.effect_index"  # noqa: S608 - constant fragments
                " FROM persist_effects e WHERE e.scope = ? AND e.stored = ?"
                " AND e.outcome = 'written') AND NOT EXISTS (SELECT 1 FROM persist_effects e"
                f" WHERE e.scope = ? AND e.stored = ? AND {_LIVE})",
                (scope, stored, scope, stored),
            )
            return cur.rowcount > 0
