"""Three `sop serve` replicas on one PostgreSQL schema, for the fault test (:mod:`replicas_crash`).

:func:`start_fleet` prepares the first replica's data directory on the given
database (``sop init --dsn``, a policy set, a capability, client
certificates: :func:`served.prepare`), makes the others from it
(``sop init --replica-of``) and starts every replica as its own process on
ephemeral ports, mutual TLS on the bridge plane. Each replica reaches the
database with ``application_name=sop-replica-<n>``, so a test can find its
sessions in ``pg_stat_activity`` and cut them (:meth:`Fleet.cut`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
from crash_clients import Ack
from crash_receipts import Tally, check_receipts
from served import Prepared, Served, prepare

from sop_verified.nexus.config import init_replica

__all__ = ["APP", "SCHEMA", "Fleet", "Replica", "start_fleet"]

APP = "sop-replica-"
"""Each replica's ``application_name`` is this and its number."""

SCHEMA = "sop_faults"
"""The schema the replicas share."""


@dataclass
class Replica:
    """One replica: its data directory, its number and, while it runs, its process."""

    n: int
    data_dir: Path
    dsn: str
    server: Served | None = None

    def start(self) -> Served:
        """Start ``sop serve`` on its data directory (RuntimeError if it does not start)."""
        self.server = Served(self.data_dir, "--dsn", f"{self.dsn} application_name={APP}{self.n}")
        return self.server

    @property
    def up(self) -> Served:
        """The running server (it must run)."""
        assert self.server is not None, f"replica {self.n} is not running"
        return self.server


@dataclass
class Fleet:
    """The replicas, the prepared first data directory, the log's key."""

    prepared: Prepared
    replicas: list[Replica]
    dsn: str
    vkey: str
    stderr: list[str] = field(default_factory=list)

    def cut(self, n: int) -> int:
        """Terminate every PostgreSQL session of replica ``n``; returns how many there were."""
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=10) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s AND pid <> pg_backend_pid()",
                (f"{APP}{n}",),
            ).fetchall()
        return sum(1 for (done,) in rows if done)

    def ready(self) -> list[str]:
        """Why each replica that is not READY is not (empty: every one is)."""
        out = []
        for r in self.replicas:
            try:
                got = httpx.get(f"{r.up.read}/health/ready", timeout=10)
                if got.status_code != 200 or got.json().get("state") != "READY":
                    out.append(f"replica {r.n}: `{got.status_code}` {got.text[:200]}")
            except httpx.HTTPError as exc:
                out.append(f"replica {r.n}: {exc}")
        return out

    def covering(self, index: int, timeout: float = 30.0) -> Served | None:
        """A replica whose latest checkpoint covers entry ``index`` (a replica's read plane proves
        what its own log has seen: the others' entries once it wrote after them)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for r in self.replicas:
                if r.server is None:
                    continue
                try:
                    got = httpx.get(f"{r.server.read}/v1/receipts/{index}", timeout=10)
                except httpx.HTTPError:
                    continue
                if got.status_code == 200:
                    return r.server
            time.sleep(0.1)
        return None

    def check_receipts(self, acks: Sequence[Ack], report: Tally) -> None:
        """Every ack's receipt, from a replica that covers them all, verifies offline."""
        if not acks:
            return
        server = self.covering(max(a.log_index for a in acks))
        if server is None:
            report.failures.append(
                f"no replica proves entry `{max(a.log_index for a in acks)}` after round"
                f" {report.rounds}"
            )
            return
        check_receipts(server, self.vkey, acks, report)

    def stop(self) -> list[str]:
        """SIGTERM every replica; what went wrong (a status other than 0)."""
        wrong = []
        for r in self.replicas:
            if r.server is None:
                continue
            status = r.server.stop()
            if status != 0:
                wrong.append(
                    f"replica {r.n} exited `{status}` on SIGTERM: {r.server.stderr()[-800:]}"
                )
            self.stderr.append(r.server.stderr())
            r.server = None
        return wrong

    def kill_all(self) -> None:
        """kill -9 every replica (a test gave up)."""
        for r in self.replicas:
            if r.server is not None:
                r.server.kill()
                r.server = None


def start_fleet(base: Path, dsn: str, replicas: int = 3) -> Fleet:
    """Prepare ``replicas`` data directories on ``dsn`` (schema :data:`SCHEMA`) and start them.

    Raises:
        RuntimeError: a replica did not start, or their log keys differ.
    """
    prepared = prepare(base, reads=True, dsn=dsn, schema=SCHEMA)
    dirs = [prepared.data_dir]
    for n in range(1, replicas):
        d = base / f"data-{n}"
        init_replica(d, prepared.data_dir)
        dirs.append(d)
    fleet = Fleet(prepared, [Replica(n, d, dsn) for n, d in enumerate(dirs)], dsn, "")
    try:
        for r in fleet.replicas:
            r.start()
    except BaseException:
        fleet.kill_all()
        raise
    keys = {r.up.vkey for r in fleet.replicas}
    if len(keys) != 1:
        fleet.kill_all()
        raise RuntimeError(f"the replicas sign with different keys: {sorted(keys)}")
    fleet.vkey = keys.pop()
    return fleet
