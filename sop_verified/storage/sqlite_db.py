"""The connections of one SQLite database file, shared by the SQLite roles.

WAL mode, ``synchronous=FULL``: every write is its own ``BEGIN IMMEDIATE`` ...
``COMMIT`` transaction and durable when it returns. A second connection serves
the persistence index's reads (under WAL it sees every committed transaction
and never waits for the writer's fsync). Every ``sqlite3`` failure is raised as
:class:`~sop_verified.errors.StorageError`; no ``sqlite3`` type leaves the
``sqlite_*`` modules.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sop_verified.errors import StorageError
from sop_verified.tools.private_fs import ensure_private_file

__all__ = [
    "READ_ONLY",
    "SQLiteDB",
    "connect",
    "connect_read_only",
    "explained",
    "insert_rows",
    "read_only_uri",
]

_T = TypeVar("_T")

_MAX_PARAMS = 900
"""Bound parameters per multi-row statement (SQLite's limit is 999 before 3.32)."""

_values_sql: dict[tuple[str, int, int], str] = {}


def insert_rows(
    db: sqlite3.Connection,
    head: str,
    rows: Sequence[Sequence[object]],
    width: int,
    tail: str = "",
) -> None:
    """Run ``head VALUES (?, ...), (?, ...) tail`` for ``rows`` in as few statements as fit.

    Args:
        db: The connection (inside the caller's transaction).
        head: The statement up to ``VALUES`` (a constant of the caller's).
        rows: The rows, each of ``width`` values.
        width: Values per row.
        tail: What follows the values (a constant, e.g. an ``ON CONFLICT`` clause).
    """
    step = max(1, _MAX_PARAMS // width)
    for at in range(0, len(rows), step):
        chunk = rows[at : at + step]
        key = (head + tail, width, len(chunk))
        sql = _values_sql.get(key)
        if sql is None:
            row = "(" + ",".join("?" * width) + ")"
            sql = _values_sql[key] = f"{head} VALUES {','.join([row] * len(chunk))}{tail}"
        db.execute(sql, [v for r in chunk for v in r])


READ_ONLY = "is open read-only (nothing is written to it)"
"""The refusal of every write to a store opened read-only, after its path."""


def read_only_uri(path: Path) -> str:
    """The URI that opens ``path`` read-only without changing a byte of its directory.

    ``mode=ro`` alone still creates the ``-wal`` and ``-shm`` files of a WAL
    database when nobody has it open, and leaves them behind. With no ``-wal``
    file nobody is writing the database (SOP's writer removes the file when it
    closes), so it is opened ``immutable``: nothing is created or locked. With
    one, a writer may be live: ``mode=ro`` reads its committed transactions
    through the shared files that already exist.

    Args:
        path: the database file.

    Returns:
        A ``file:`` URI for ``sqlite3.connect(..., uri=True)``.
    """
    wal = path.with_name(path.name + "-wal")
    return f"{path.resolve().as_uri()}?mode=ro" + ("" if wal.exists() else "&immutable=1")


def connect(path: Path, *, read_only: bool) -> sqlite3.Connection:
    """A connection to ``path`` shared across threads (autocommit: transactions are explicit).

    Args:
        path: the database file (it must exist when ``read_only``).
        read_only: open it with :func:`read_only_uri`: every write fails.

    Raises:
        sqlite3.Error: the file cannot be opened.
    """
    if read_only:
        return sqlite3.connect(
            read_only_uri(path), uri=True, isolation_level=None, check_same_thread=False
        )
    return sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)


def connect_read_only(path: Path, purpose: str) -> sqlite3.Connection:
    """A read-only connection to the database at ``path`` (an audit or a rebuild writes nothing).

    Opened with :func:`read_only_uri`: nothing in the database's directory is
    created or changed, so it also opens a copy whose files cannot be written.

    Raises:
        StorageError: the file is missing or cannot be opened (``purpose`` says what for).
    """
    if not path.is_file():
        raise StorageError(f"no database at `{path}` {purpose}")
    try:
        return sqlite3.connect(read_only_uri(path), uri=True)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open `{path}` {purpose}: {exc}") from exc


def explained(exc: sqlite3.Error, explain: Callable[[], str | None] | None) -> str:
    """``exc``'s message, with the reason a registered function gave when one raised."""
    why = explain() if explain is not None and "user-defined function" in str(exc) else None
    return f"{exc}: {why}" if why else str(exc)


class SQLiteDB:
    """A writer connection (with its lock) and a reader connection on one file."""

    def __init__(
        self,
        path: Path,
        schema: str,
        *,
        prepare: Callable[[sqlite3.Connection], None] | None = None,
        explain: Callable[[], str | None] | None = None,
        before_commit: Callable[[sqlite3.Connection, tuple[int, int] | None], None] | None = None,
        read_only: bool = False,
    ) -> None:
        """Open (or create) the database at ``path`` and run ``schema`` (idempotent DDL).

        Args:
            path: The database file.
            schema: Idempotent DDL run at every open.
            prepare: Called on each new connection before the schema runs (the
                state seal's functions).
            explain: Says why the last failed write failed when SQLite cannot
                (a function's refusal reaches SQLite only as "raised exception").
            before_commit: Runs last in every write transaction, before
                ``COMMIT``, with the transaction's log growth (the state seal's close).
            read_only: open the existing file read-only (:func:`read_only_uri`): no
                schema, no pragma, nothing created; every write transaction is refused.

        Raises:
            StorageError: the file cannot be opened as a SQLite database (read-only:
                it does not exist).
        """
        self.path = path
        self.read_only = read_only
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._explain = explain
        self._before_commit = before_commit
        if read_only and not path.is_file():
            raise StorageError(f"no sqlite store at `{path}` to open read-only")
        try:
            if not read_only:
                ensure_private_file(path)  # 0600 before SQLite creates it (and -wal, -shm) 0644
        except OSError as exc:
            raise StorageError(f"cannot create the sqlite store `{path}`: {exc}") from exc
        try:
            self._db = connect(path, read_only=read_only)
            if prepare is not None:
                prepare(self._db)
            if not read_only:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.execute("PRAGMA foreign_keys=ON")
                self._db.executescript(schema)
            self._reader = connect(path, read_only=read_only)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the sqlite store `{path}`: {exc}") from exc

    def close(self) -> None:
        """Close both connections."""
        with self._lock, self._read_lock:
            self._reader.close()
            self._db.close()

    @contextmanager
    def tx(self, growth: tuple[int, int] | None = None) -> Iterator[sqlite3.Connection]:
        """A write transaction that commits on exit and rolls back on any error.

        Args:
            growth: ``(log size before, after)`` when the transaction appends
                log entries (None: it appends none).

        Raises:
            StorageError: a statement or the commit failed (nothing is kept), or the
                store is open read-only.
        """
        if self.read_only:
            raise StorageError(f"the sqlite store `{self.path}` {READ_ONLY}")
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                if self._before_commit is not None:
                    self._before_commit(self._db, growth)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StorageError(f"sqlite write failed: {self._why(exc)}") from exc
            except BaseException:
                self._rollback()
                raise

    def _why(self, exc: sqlite3.Error) -> str:
        return explained(exc, self._explain)

    def _rollback(self) -> None:
        """Roll back an open transaction (a closed connection has none)."""
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.ProgrammingError:  # closed: nothing was begun
            return

    def read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn`` on the writer connection under its lock (raises StorageError)."""
        with self._lock:
            try:
                return fn(self._db)
            except sqlite3.Error as exc:
                raise StorageError(f"sqlite read failed: {exc}") from exc

    def query(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        """Run one read statement under the writer's lock and return all rows (the log's path)."""
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StorageError(f"sqlite read failed: {exc}") from exc

    def read_query(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        """Run one read statement on the reader connection (committed state, no writer wait)."""
        with self._read_lock:
            try:
                return self._reader.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StorageError(f"sqlite read failed: {exc}") from exc

    def self_test(self) -> None:
        """SQLite's quick integrity check; raise StorageError unless it says ``ok``."""
        rows = self.read(lambda db: db.execute("PRAGMA quick_check").fetchall())
        if [tuple(r) for r in rows] != [("ok",)]:
            raise StorageError(f"sqlite integrity check failed: {rows[:3]}")
