"""A witness's memory: the latest checkpoint it cosigned for each log, in SQLite.

C2SP tlog-witness asks a witness to keep, per log origin, the latest
checkpoint it verified and cosigned, to persist it before answering, and to
check and update it atomically (two requests racing must never roll the
record back). :meth:`WitnessStore.advance` is that compare-and-set: in one
``BEGIN IMMEDIATE`` transaction it replaces the record only if it is still
the one the caller checked the new checkpoint against, and the commit is
durable (WAL, ``synchronous=FULL``) before it returns. The same holds across
processes sharing the file: SQLite's write lock serialises them.

Sizes are kept as decimal text: a tree size may reach ``2**64 - 1``, past
SQLite's signed 64-bit integers. Any SQLite failure is a
:class:`~sop_verified.errors.StorageError`: the witness then cosigns nothing.

The store also keeps *evidence*: checkpoints a known log signed that the
witness refused because they contradict what it cosigned before (a fork at
the same size, a consistency proof that fails). The spec allows keeping them
("it might be proof of log misbehavior"); only the newest
:data:`MAX_EVIDENCE` are kept.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sop_verified.errors import StorageError
from sop_verified.tools.checkpoint import Checkpoint
from sop_verified.tools.private_fs import ensure_private_file

__all__ = ["MAX_EVIDENCE", "Evidence", "Latest", "WitnessStore"]

MAX_EVIDENCE = 1000
"""Most refused checkpoints kept as evidence (the oldest are dropped)."""

_SCHEMA_VERSION = "1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS latest (
    origin TEXT PRIMARY KEY,
    size TEXT NOT NULL,
    root BLOB NOT NULL,
    checkpoint TEXT NOT NULL,
    updated INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS evidence (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    origin TEXT NOT NULL,
    received INTEGER NOT NULL,
    code TEXT NOT NULL,
    old_size TEXT NOT NULL,
    checkpoint TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Latest:
    """The latest cosigned state of a log: size and root (``root`` None: never cosigned)."""

    size: int = 0
    root: bytes | None = None


@dataclass(frozen=True, slots=True)
class Evidence:
    """A refused checkpoint that a known log signed."""

    origin: str
    received: int
    code: str
    old_size: int
    checkpoint: str


class WitnessStore:
    """The witness's SQLite state file; safe to share between threads of one process."""

    def __init__(self, path: Path) -> None:
        """Open (or create, 0600) the state database at ``path``.

        Raises:
            StorageError: the database cannot be opened or is not a witness state of
                this version.
        """
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            ensure_private_file(self.path)
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._setup()
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"witness state `{self.path}` cannot be opened: {exc}") from None

    def _setup(self) -> None:
        with self._transaction() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema', ?)", (_SCHEMA_VERSION,))
            elif row[0] != _SCHEMA_VERSION:
                raise StorageError(
                    f"witness state `{self.path}` has schema `{row[0]}`, not `{_SCHEMA_VERSION}`"
                )

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def latest(self, origin: str) -> Latest:
        """The latest cosigned state of ``origin`` (size 0, no root, if never cosigned).

        Raises:
            StorageError: the database failed.
        """
        try:
            with self._lock:
                row = self._db.execute(
                    "SELECT size, root FROM latest WHERE origin = ?", (origin,)
                ).fetchone()
        except sqlite3.Error as exc:
            raise StorageError(f"witness state cannot be read: {exc}") from None
        return Latest() if row is None else Latest(int(row[0]), bytes(row[1]))

    def advance(
        self, seen: Latest, checkpoint: Checkpoint, note: str, *, now: int
    ) -> Latest | None:
        """Record ``checkpoint`` as its log's latest, if the record is still ``seen``.

        Args:
            seen: The state the new checkpoint was checked against.
            checkpoint: The new checkpoint (verified, and checked against ``seen``).
            note: The checkpoint note as received (kept for monitors and audits).
            now: The time of the update, POSIX seconds.

        Returns:
            None when the record was replaced and the change is durable; otherwise
            the record as it is now (another request changed it meanwhile).

        Raises:
            StorageError: the database failed; nothing was recorded.
        """
        try:
            with self._transaction() as db:
                origin = checkpoint.origin
                row = db.execute(
                    "SELECT size, root FROM latest WHERE origin = ?", (origin,)
                ).fetchone()
                current = Latest() if row is None else Latest(int(row[0]), bytes(row[1]))
                if current != seen:
                    return current
                db.execute(
                    "INSERT OR REPLACE INTO latest VALUES (?, ?, ?, ?, ?)",
                    (origin, str(checkpoint.size), checkpoint.root_hash, note, now),
                )
        except sqlite3.Error as exc:
            raise StorageError(f"witness state cannot be updated: {exc}") from None
        return None

    def record_evidence(
        self, origin: str, code: str, old_size: int, checkpoint: str, now: int
    ) -> None:
        """Keep a refused checkpoint a known log signed (the newest :data:`MAX_EVIDENCE`).

        Raises:
            StorageError: the database failed.
        """
        try:
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO evidence (origin, received, code, old_size, checkpoint)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (origin, now, code, str(old_size), checkpoint),
                )
                db.execute(
                    "DELETE FROM evidence WHERE id <= (SELECT MAX(id) FROM evidence) - ?",
                    (MAX_EVIDENCE,),
                )
        except sqlite3.Error as exc:
            raise StorageError(f"witness evidence cannot be recorded: {exc}") from None

    def checkpoint(self, origin: str) -> str | None:
        """The latest cosigned checkpoint note of ``origin`` as received, or None.

        Raises:
            StorageError: the database failed.
        """
        try:
            with self._lock:
                row = self._db.execute(
                    "SELECT checkpoint FROM latest WHERE origin = ?", (origin,)
                ).fetchone()
        except sqlite3.Error as exc:
            raise StorageError(f"witness state cannot be read: {exc}") from None
        return None if row is None else str(row[0])

    def evidence(self) -> list[Evidence]:
        """Every refused checkpoint kept, oldest first.

        Raises:
            StorageError: the database failed.
        """
        try:
            with self._lock:
                rows = self._db.execute(
                    "SELECT origin, received, code, old_size, checkpoint FROM evidence ORDER BY id"
                ).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"witness evidence cannot be read: {exc}") from None
        return [Evidence(o, r, c, int(s), cp) for o, r, c, s, cp in rows]

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
