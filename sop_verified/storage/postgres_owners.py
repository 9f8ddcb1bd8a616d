"""Who carries out a pending persist decision, on a log several replicas share.

A persist decision is *pending* from its ALLOW entry until its effect entry (or
an abort) is logged; boot repair closes the pending decisions a crash left
behind (INV-9). On a shared log, a replica that boots must not close a
decision another replica is still carrying out. So each replica has an
*owner id*, stamped on the pending rows it writes, and holds a session-level
advisory lock on that id, on a connection of its own, for as long as it runs.
Boot repair closes only rows whose owner's lock it can take: that owner's
process died or closed, and its session with it. Claims are kept until this
replica closes, so two replicas booting together never both repair one row.

The lock keeps a booting replica off a live one's work; safety does not rest
on it. A session can be lost (a PostgreSQL restart drops every lock) and be
taken again only on the next write, so there is a window in which a live
replica's rows look abandoned. Whatever the locks say, a batch that closes a
decision another replica closed first is rolled back whole
(:func:`~sop_verified.storage.persist_index.check_closed`): a decision never
gets two effect entries.

A replica whose process ends (kill -9 included) loses its session at once;
one whose host dies without closing its connections keeps its lock until the
server's TCP keepalives give up on the session, set here to about 25 s
(10 s idle, then 3 probes 5 s apart), not the system's default of hours.
Until then its pending rows wait: they block nothing, and the next boot of
any replica after that closes them.

Owner ids are random, at or above 2**32, so their lock keys never meet the
``hashtext`` keys (32-bit) of the schema's other advisory locks. Owner 0 marks
rows indexed late (by catch-up, or before this column existed): no live
replica carries them out, and boot repair claims them like a dead owner's.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import psycopg

from sop_verified.errors import StorageError

__all__ = ["NO_OWNER", "PendingOwners"]

NO_OWNER = 0
"""The owner of rows no live replica carries out (indexed late, or from an older schema)."""

_BASE = 1 << 32  # lock keys above every 32-bit hashtext() key
_RECHECK_SECONDS = 1.0  # how stale the session may be before a write checks it again
_KEEPALIVES = (  # the server's side of this session (ignored over a Unix socket)
    "SET tcp_keepalives_idle = 10",
    "SET tcp_keepalives_interval = 5",
    "SET tcp_keepalives_count = 3",
)


class PendingOwners:
    """This replica's owner id, its lock, and the dead owners it has claimed."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        scrub: Callable[[str], str],
        where: str,
    ) -> None:
        """Draw an owner id; the session and its lock are taken at first use.

        Args:
            connect: Opens a new autocommit connection to the database.
            scrub: Masks the DSN's password in a driver's message.
            where: The redacted DSN, for error messages.
        """
        self.id = 1 + secrets.randbits(60)
        self._connect = connect
        self._scrub = scrub
        self._where = where
        self._mutex = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._checked = 0.0
        self._held: set[int] = set()

    def owner(self) -> int:
        """This replica's owner id, its lock held (taken again if the session was lost).

        Raises:
            StorageError: PostgreSQL is not answering, or the lock is held elsewhere.
        """
        with self._mutex:
            self._session()
        return self.id

    def claim(self, owners: Iterable[int]) -> set[int]:
        """Those of ``owners`` whose pending rows this replica may close now.

        Never this replica's own id; an owner whose lock this replica takes
        (or already holds): that owner is gone, and the claim is kept until
        :meth:`close`.

        Raises:
            StorageError: PostgreSQL is not answering.
        """
        wanted = set(owners) - {self.id}
        with self._mutex:
            conn = self._session()
            try:
                for owner in sorted(wanted - self._held):
                    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (_BASE + owner,))
                    if row.fetchone() == (True,):
                        self._held.add(owner)
            except psycopg.Error as exc:
                self._drop()
                raise self._failed("claim abandoned pending decisions", exc) from None
            return wanted & self._held

    def close(self) -> None:
        """End the session: this replica's lock and its claims are released."""
        with self._mutex:
            self._drop()

    def _session(self) -> psycopg.Connection[Any]:
        conn, now = self._conn, time.monotonic()
        if conn is not None and not conn.closed:
            if now - self._checked < _RECHECK_SECONDS:
                return conn
            try:
                conn.execute("SELECT 1")
                self._checked = now
                return conn
            except psycopg.Error:
                self._drop()  # the session is gone, and every lock it held with it
        try:
            conn = self._connect()
            for setting in _KEEPALIVES:  # a host that died without a word frees its rows in ~25 s
                conn.execute(setting)
            got = conn.execute("SELECT pg_try_advisory_lock(%s)", (_BASE + self.id,)).fetchone()
        except psycopg.Error as exc:
            raise self._failed("take this replica's owner lock", exc) from None
        if got != (True,):
            conn.close()
            raise StorageError(
                f"the owner lock `{self.id}` at `{self._where}` is held by another session;"
                " restart this replica to draw a new owner id"
            )
        self._conn, self._checked = conn, now
        return conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn, self._held = None, set()

    def _failed(self, what: str, exc: psycopg.Error) -> StorageError:
        return StorageError(f"cannot {what} at `{self._where}`: {self._scrub(str(exc).strip())}")
