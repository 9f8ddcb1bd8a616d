"""A private PostgreSQL cluster for the fault tests: started, restarted and stopped at will.

The machine's server (127.0.0.1:5432, :mod:`pg_server`) is shared with other
tests and people: a test that restarts PostgreSQL must never touch it. A
:class:`PrivatePostgres` is a cluster of its own: ``initdb`` into a fresh
directory, ``postgres`` on a free loopback port with its socket in that
directory, ``fsync`` on, trust authentication, database ``test``. It is run
through ``pg_ctl``, so :meth:`PrivatePostgres.restart` can stop it ``fast``
(every session terminated, a shutdown checkpoint) or ``immediate`` (the
server's processes quit at once: a crash, recovered from the WAL at the next
start), and :meth:`PrivatePostgres.stop` / :meth:`PrivatePostgres.start` leave
it down for as long as a test likes.

initdb refuses to run as root: as root the cluster belongs to the ``postgres``
user (its commands run through ``runuser``, or ``setpriv``), in a directory
under the system's temporary directory that user can reach.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg

__all__ = ["PrivatePostgres", "find_binary", "private_postgres"]

_DIRS = ("/usr/local/bin", *sorted(str(p) for p in Path("/usr/lib/postgresql").glob("*/bin")))


def find_binary(name: str) -> str:
    """The path of PostgreSQL's ``name`` (``initdb``, ``pg_ctl``): on PATH or in its bin dir.

    Raises:
        RuntimeError: not installed.
    """
    found = shutil.which(name)
    if found:
        return found
    for d in reversed(_DIRS):  # the newest version's bin directory first
        if (Path(d) / name).is_file():
            return str(Path(d) / name)
    raise RuntimeError(f"PostgreSQL's `{name}` is not installed (looked on PATH and in {_DIRS})")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_owner() -> list[str]:
    """The prefix that runs a command as the cluster's owner (nothing unless root)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--"]
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]


class PrivatePostgres:
    """A PostgreSQL cluster of one test's own, on a free loopback port."""

    def __init__(self) -> None:
        """Create the cluster (``initdb``) and start it; :meth:`close` removes it."""
        self._prefix = _as_owner()
        self.base = Path(tempfile.mkdtemp(prefix="sop-pg-"))
        if self._prefix:  # the cluster's owner must reach its directory
            owner = pwd.getpwnam("postgres")
            os.chown(self.base, owner.pw_uid, owner.pw_gid)
        self.data = self.base / "data"
        self.log = self.base / "postgres.log"
        self.port = _free_port()
        self._run(
            find_binary("initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",  # the cluster's files are created once; the server runs fsync on
        )
        self.starts = 0
        self.start()
        with psycopg.connect(self.admin_dsn("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE test")

    @property
    def dsn(self) -> str:
        """The DSN of database ``test`` over TCP on loopback."""
        return self.admin_dsn("test")

    def admin_dsn(self, dbname: str) -> str:
        """The DSN of ``dbname`` over TCP on loopback."""
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user=postgres"

    def _run(self, *cmd: str, timeout: float = 120) -> None:
        done = subprocess.run(
            [*self._prefix, *cmd], capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"`{' '.join(cmd[:2])}` exited {done.returncode}: {done.stdout[-800:]}"
                f" {done.stderr[-800:]}\n{self.server_log()[-1500:]}"
            )

    def _pg_ctl(self, *args: str) -> None:
        self._run(find_binary("pg_ctl"), "-D", str(self.data), "-w", "-t", "60", *args)

    def start(self) -> None:
        """Start the server and wait until it accepts connections (on the same port)."""
        options = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=on"
            " -c synchronous_commit=on -c max_connections=200"
        )
        self._pg_ctl("-l", str(self.log), "-o", options, "start")
        self.starts += 1

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (sessions ended, a checkpoint) or ``immediate`` (a crash)."""
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"`{mode}` is not a pg_ctl stop mode")
        self._pg_ctl("-m", mode, "stop")

    def restart(self, mode: str = "fast", *, down: float = 0.0) -> None:
        """Stop the server (``mode``), leave it down ``down`` seconds, start it again."""
        self.stop(mode)
        time.sleep(down)
        self.start()

    def running(self) -> bool:
        """Whether the server answers on its port."""
        try:
            with psycopg.connect(self.dsn, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def server_log(self) -> str:
        """What the server wrote to its log so far."""
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        """Stop the server (immediately) and remove the cluster."""
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            if (self.data / "postmaster.pid").exists():
                self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A private cluster for the block; stopped and removed afterwards."""
    pg = PrivatePostgres()
    try:
        yield pg
    finally:
        pg.close()
