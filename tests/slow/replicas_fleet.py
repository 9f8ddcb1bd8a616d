"""Three `sop serve` replicas on one PostgreSQL schema, for the fault test (:mod:`replicas_crash`).

:func:`start_fleet` prepares the first replica's data directory on the given
database (``sop init --dsn``, a policy set, a capability, client
certificates: :func:`served.prepare`), makes the others from it
(``sop init --replica-of``) and starts every replica as its own process on
ephemeral ports, mutual TLS on the bridge plane. Each replica reaches the
database with ``application_name=sop-replica-<n>``, so a test can find its
sessions in ``pg_stat_activity`` and cut them (:meth:`Fleet.cut`).

With ``witness``, a `sop witness serve` process too, named in every replica's
``sop.toml`` (``min = 1``): each replica submits its checkpoints to it and
publishes only what it cosigned. :meth:`Fleet.watch_witness` collects what each
replica published and fails a witness alarm (the witness refused a fork or a
rollback); :meth:`Fleet.check_published` holds every published checkpoint
against the final log: each must be its tree at that size, so the witness never
cosigned two inconsistent checkpoints.
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
from served_witness import ServedWitness

from sop_verified.errors import SOPError
from sop_verified.nexus.config import init_replica
from sop_verified.nexus.state_ops import accept_config
from sop_verified.tools.checkpoint import open_checkpoint
from sop_verified.tools.cosignature import verify_cosignatures
from sop_verified.tools.merkle import node_hash
from sop_verified.tools.signed_note import Verifier
from sop_verified.tools.witness_config import init_witness_dir

__all__ = ["APP", "SCHEMA", "Fleet", "Replica", "start_fleet", "witness_alarms"]

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
    witness: ServedWitness | None = None
    published: dict[int, str] = field(default_factory=dict)  # size -> a published note

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

    def watch_witness(self, report: Tally) -> None:
        """Each replica's published checkpoint, kept; a witness alarm on any is a failure."""
        if self.witness is None:
            return
        for r in self.replicas:
            if r.server is None:
                continue
            try:
                metrics = httpx.get(f"{r.server.read}/metrics", timeout=10).text
                note = httpx.get(f"{r.server.read}/log/checkpoint", timeout=10)
            except httpx.HTTPError as exc:
                report.failures.append(
                    f"replica {r.n}'s read plane after round {report.rounds}: {exc}"
                )
                continue
            report.failures.extend(
                f"replica {r.n} after round {report.rounds}: the witness refused: {line}"
                for line in witness_alarms(metrics)
            )
            if note.status_code == 200:
                size = int(note.text.split("\n")[1])
                self.published.setdefault(size, note.text)

    def check_published(self, leaves: dict[int, str], report: Tally) -> int:
        """Every checkpoint a replica published: the witness's cosignature, the log key's
        signature, and the final log's tree at its size (so all consistent); how many."""
        if self.witness is None:
            return 0
        log_key = Verifier.from_string(self.vkey)
        hashes = [bytes.fromhex(leaves[i]) for i in range(len(leaves))]
        for size, note in sorted(self.published.items()):
            try:
                verify_cosignatures(note, [self.witness.verifier], minimum=1)
                checkpoint = open_checkpoint(note, [log_key], origin="sop.local/log")
            except SOPError as exc:
                report.failures.append(f"published checkpoint `{size}` does not verify: {exc}")
                continue
            if size > len(hashes) or _root(hashes[:size]) != checkpoint.root_hash:
                report.failures.append(
                    f"published checkpoint `{size}` (root `{checkpoint.root_hash.hex()}`) is"
                    f" not the final log's tree at that size: the witness cosigned a fork"
                )
        return len(self.published)

    def stop(self) -> list[str]:
        """SIGTERM every replica (and the witness); what went wrong (a status other than 0)."""
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
        if self.witness is not None and (status := self.witness.stop()) != 0:
            wrong.append(
                f"the witness exited `{status}` on SIGTERM: {self.witness.stderr()[-800:]}"
            )
        return wrong

    def kill_all(self) -> None:
        """kill -9 every replica (a test gave up)."""
        for r in self.replicas:
            if r.server is not None:
                r.server.kill()
                r.server = None
        if self.witness is not None:
            self.witness.kill()


def witness_alarms(metrics: str) -> list[str]:
    """The lines of a replica's ``/metrics`` that say a witness refused a fork or a rollback
    (a 409 retried from the witness's size, ``old_size_mismatch``, is replicas racing)."""
    out = []
    for line in metrics.splitlines():
        alarm = line.startswith("sop_witness_alarm{") and not line.endswith(" 0.0")
        refused = line.startswith("sop_witness_submissions_total{") and any(
            f'outcome="{c}"' in line for c in ("fork", "bad_proof")
        )
        if alarm or refused:
            out.append(line)
    return out


def _root(hashes: list[bytes]) -> bytes:
    """RFC 9162 root of the leaf hashes (at least one)."""
    if len(hashes) == 1:
        return hashes[0]
    k = 1 << ((len(hashes) - 1).bit_length() - 1)  # the largest power of two below the size
    return node_hash(_root(hashes[:k]), _root(hashes[k:]))


def _witnessed(base: Path, prepared: Prepared) -> ServedWitness:
    """Start a witness of the prepared log and name it in its ``sop.toml`` (accepted)."""
    log_vkey = (prepared.data_dir / "keys" / "checkpoint.vkey").read_text().strip()
    init_witness_dir(base / "witness", "witness.example/faults", [(log_vkey, None)])
    witness = ServedWitness(base / "witness")
    table = (
        "\n[witnesses]\nmin = 1\nmax_backoff_seconds = 1\nwitness = [\n"
        f'  {{ url = "{witness.url}", vkey = "{witness.vkey}" }},\n]\n'
    )
    with (prepared.data_dir / "sop.toml").open("a", encoding="utf-8") as fh:
        fh.write(table)
    accept_config(prepared.data_dir)  # sop.toml is sealed once the log has entries
    return witness


def start_fleet(base: Path, dsn: str, replicas: int = 3, *, witness: bool = True) -> Fleet:
    """Prepare ``replicas`` data directories on ``dsn`` (schema :data:`SCHEMA`) and start them
    (with ``witness``, a witness they publish through first).

    Raises:
        RuntimeError: a replica or the witness did not start, or their log keys differ.
    """
    prepared = prepare(base, reads=True, dsn=dsn, schema=SCHEMA)
    served_witness = _witnessed(base, prepared) if witness else None
    dirs = [prepared.data_dir]
    for n in range(1, replicas):
        d = base / f"data-{n}"
        init_replica(d, prepared.data_dir)
        dirs.append(d)
    fleet = Fleet(prepared, [Replica(n, d, dsn) for n, d in enumerate(dirs)], dsn, "")
    fleet.witness = served_witness
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
