"""The connections of one PostgreSQL schema, shared by the PostgreSQL roles.

A :class:`PostgresDB` holds a ``psycopg_pool.ConnectionPool`` whose every
connection works in one schema (``search_path``) and, when the store holds
the state key, carries the session's seal journal (see
:mod:`sop_verified.storage.postgres_seal`). Every write is one transaction
that runs the ``before_commit`` hook last and is durable when it returns:
each session sets ``synchronous_commit`` on, whatever the server's default
(a server run with ``fsync`` off is beyond what a client can correct).
Reads are single statements (one snapshot each) or a read-only
``REPEATABLE READ`` transaction. Every ``psycopg`` failure is raised as
:class:`~sop_verified.errors.StorageError`; no ``psycopg`` type leaves the
``postgres_*`` modules.

A pooled session can be dead when it is taken: the server restarted, or an
administrator terminated it. Such a session is dropped and the next one taken
at once, when nothing of the caller's ran in it: a write whose ``BEGIN``
failed, a read at any point (reads change nothing). A write that failed after
its ``BEGIN`` is never sent again (it may have committed). Measured against
the pool's ``check=`` (a round trip before every use, and a pause of at least
a second each time a dead session is found), this refused as few requests
after a restart and recovered in a tenth of the time after sessions were cut
(tests/slow/replicas_crash.py; ADR 0015).

A DSN may hold a password: it is never logged or put in a message.
:func:`redact_dsn` is what is shown instead, and every driver message is
scrubbed of the password before it is raised (:meth:`PostgresDB.scrub`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from typing import Any, TypeVar
from urllib.parse import urlsplit

import psycopg
from psycopg import conninfo, sql
from psycopg_pool import ConnectionPool

from sop_verified.errors import StorageError

__all__ = [
    "DEFAULT_SCHEMA",
    "Cursor",
    "PostgresDB",
    "check_schema_name",
    "dsn_secrets",
    "redact_dsn",
]

_T = TypeVar("_T")

Cursor = psycopg.Cursor[Any]
"""A cursor inside one of :class:`PostgresDB`'s transactions (the roles' SQL runs on it)."""

DEFAULT_SCHEMA = "sop"
"""The schema a backend's tables live in when none is named."""

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_UNPARSEABLE = "the PostgreSQL DSN does not parse (its text is not shown: it may hold a password)"


def check_schema_name(schema: str) -> str:
    """``schema``, once it is a plain lowercase identifier (so it never needs quoting).

    Raises:
        StorageError: it is not ``[a-z_][a-z0-9_]*`` of at most 63 characters.
    """
    if not isinstance(schema, str) or _SCHEMA_NAME.fullmatch(schema) is None:
        raise StorageError(
            f"`{schema}` is not a PostgreSQL schema name SOP accepts"
            " (lowercase letters, digits and `_`, not starting with a digit, at most 63)"
        )
    return schema


def _params(dsn: str) -> dict[str, Any]:
    try:
        return conninfo.conninfo_to_dict(dsn)
    except (psycopg.Error, TypeError, ValueError):
        raise StorageError(_UNPARSEABLE) from None


def redact_dsn(dsn: str) -> str:
    """``dsn`` with its password replaced by ``***``: what may be logged or shown.

    A DSN that does not parse is not shown at all (the parser's message quotes it).
    """
    try:
        params = _params(dsn)
    except StorageError:
        return "<a DSN that does not parse>"
    if "password" in params:
        params["password"] = "***"  # noqa: S105 - the mask, not a password
    return conninfo.make_conninfo(**params)


def dsn_secrets(dsn: str) -> tuple[str, ...]:
    """The password of ``dsn`` in every spelling a message could quote (parsed, as written).

    Raises:
        StorageError: the DSN does not parse.
    """
    found = {str(_params(dsn).get("password") or "")}
    if "://" in dsn:
        with suppress(ValueError):
            found.add(urlsplit(dsn).password or "")
    return tuple(sorted((s for s in found if s), key=len, reverse=True))


Growth = tuple[int, int] | Callable[[], tuple[int, int] | None] | None
"""A transaction's log growth, or how to learn it before ``COMMIT``."""


class PostgresDB:
    """A connection pool on one schema, its write transactions and its reads."""

    def __init__(
        self,
        dsn: str,
        schema: str,
        *,
        pool_size: int = 4,
        timeout: float = 5.0,
        prepare: Callable[[psycopg.Connection[Any]], None] | None = None,
        explain: Callable[[str], str | None] | None = None,
        before_commit: Callable[[Cursor, tuple[int, int] | None], None] | None = None,
    ) -> None:
        """Open a pool of connections to ``dsn`` working in ``schema``.

        Args:
            dsn: A libpq connection string or URL (it may hold a password).
            schema: The schema every statement works in (already created).
            pool_size: Most connections held at once.
            timeout: Seconds to wait for a connection (at open and per call);
                past it the call fails with StorageError (a DENY, INV-2).
            prepare: Called on each new connection once it works in the
                schema (the state seal's session journal).
            explain: Says why a failed statement failed, given the driver's
                message, when the driver cannot (a seal journal missing).
            before_commit: Runs last in every write transaction, before
                ``COMMIT``, with the transaction's log growth (the seal's close).

        Raises:
            StorageError: the DSN does not parse, or no connection could be made.
        """
        self.schema = check_schema_name(schema)
        self._secrets = dsn_secrets(dsn)
        self.where = redact_dsn(dsn)
        self._prepare = prepare
        self._explain = explain
        self._tries = max(1, pool_size) + 1  # every pooled session dead, then a fresh one
        self._before_commit = before_commit
        kwargs: dict[str, Any] = {"autocommit": True, "connect_timeout": max(1, round(timeout))}
        if "application_name" not in _params(dsn):  # what pg_stat_activity shows for SOP
            kwargs["application_name"] = f"sop:{schema}"
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            dsn,
            min_size=1,
            max_size=max(1, pool_size),
            kwargs=kwargs,
            configure=self._configure,
            open=False,
            name=f"sop-{schema}",
            timeout=timeout,
            reconnect_timeout=max(timeout, 30.0),
        )
        try:
            self._pool.open(wait=True, timeout=timeout)
        except psycopg.Error as exc:
            self._pool.close()
            raise StorageError(
                f"cannot connect to PostgreSQL at `{self.where}`: {self.scrub(str(exc))}"
            ) from None

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
        conn.execute("SET bytea_output TO 'hex'")
        conn.execute(
            "SET synchronous_commit TO on"
        )  # spec: INV-9 — durable at COMMIT, whatever the server's default
        if self._prepare is not None:
            self._prepare(conn)

    def scrub(self, text: str) -> str:
        """``text`` with the DSN's password masked (a driver message may quote it)."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _why(self, exc: BaseException) -> str:
        text = self.scrub(str(exc).strip())
        why = None if self._explain is None else self._explain(text)
        return f"{text}: {why}" if why else text

    def close(self) -> None:
        """Close every connection; later calls raise StorageError."""
        self._pool.close()

    @contextmanager
    def tx(self, growth: Growth = None) -> Iterator[Cursor]:
        """A write transaction that commits on exit and rolls back on any error.

        Args:
            growth: ``(log size before, after)`` when the transaction appends
                log entries (None: it appends none), or a function asked for it just
                before ``COMMIT`` (a batch rebuilt on another head inside the transaction).

        Raises:
            StorageError: a statement or the commit failed (nothing is kept).
        """
        try:
            with self._begun() as conn, conn.cursor() as cur:
                yield cur
                if self._before_commit is not None:
                    self._before_commit(cur, growth() if callable(growth) else growth)
        except psycopg.Error as exc:
            raise StorageError(f"postgresql write failed: {self._why(exc)}") from None

    @contextmanager
    def unsealed_tx(self) -> Iterator[Cursor]:
        """A write transaction that does not touch the state seal (no ``before_commit``).

        For ``persist_content`` alone, the one table of SOP's outside the seal
        (:mod:`sop_verified.storage.postgres_content`): its writes then never
        wait on the seal row that every log batch locks. A write to a sealed
        table in it would go unsealed, which the boot check refuses (INV-11).

        Raises:
            StorageError: a statement or the commit failed (nothing is kept).
        """
        try:
            with self._begun() as conn, conn.cursor() as cur:
                yield cur
        except psycopg.Error as exc:
            raise StorageError(f"postgresql write failed: {self._why(exc)}") from None

    @contextmanager
    def _begun(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection inside a transaction just begun.

        A session found dead at ``BEGIN`` (nothing of the caller's ran in it) is
        dropped, and the next one is taken at once.
        """
        for attempt in range(self._tries):
            held = ExitStack()
            conn = held.enter_context(self._pool.connection())
            try:
                held.enter_context(conn.transaction())
            except psycopg.OperationalError:
                dead = conn.broken
                held.close()  # the pool drops a broken connection when it comes back
                if dead and attempt + 1 < self._tries:
                    continue
                raise
            with held:
                yield conn
            return

    def _reading(self, fn: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        """``fn`` (reads only) on a pooled connection; run again on the next one if the
        session turns out dead (it changed nothing)."""
        for attempt in range(self._tries):
            with self._pool.connection() as conn:
                try:
                    return fn(conn)
                except psycopg.OperationalError:
                    if not conn.broken or attempt + 1 == self._tries:
                        raise
        raise AssertionError("unreachable: the last try returns or raises")

    def connection(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        """A pooled connection, for a caller that streams (it turns psycopg errors into
        StorageError itself, through :meth:`scrub`)."""
        return self._pool.connection()

    def query(
        self, statement: str, params: Sequence[object] = (), *, binary: bool = False
    ) -> list[Any]:
        """Run one read statement (one snapshot) and return all rows.

        Args:
            statement: the statement.
            params: its parameters.
            binary: results in binary (a BYTEA column arrives as its bytes, not as hex text).

        Raises:
            StorageError: the read failed.
        """
        try:
            return self._reading(
                lambda conn: conn.execute(statement, params, binary=binary).fetchall()
            )
        except psycopg.Error as exc:
            raise StorageError(f"postgresql read failed: {self._why(exc)}") from None

    def read(self, fn: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        """Run ``fn`` in a read-only ``REPEATABLE READ`` transaction (one snapshot throughout).

        Raises:
            StorageError: the read failed.
        """

        def snapshot(conn: psycopg.Connection[Any]) -> _T:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                return fn(conn)

        try:
            return self._reading(snapshot)
        except psycopg.Error as exc:
            raise StorageError(f"postgresql read failed: {self._why(exc)}") from None
