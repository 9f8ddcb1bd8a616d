"""Faults under load on three `sop serve` replicas sharing one PostgreSQL log (issue 15, item 5).

Three replicas (three processes, :mod:`replicas_fleet`) on one schema of a
private PostgreSQL cluster (:mod:`pg_private`: the machine's server is never
restarted), under concurrent load from client threads spread across them
(:mod:`crash_clients`: client ``n`` asks replica ``n % 3``, deciding and
persisting, each request with its own idempotency key). Then, one after the
other:

1. **kill -9** a random replica at a random moment, and restart it (the
   others keep deciding meanwhile); its clients resend what was in flight;
2. **restart PostgreSQL** (``fast`` and ``immediate`` in turn, down for a
   random moment) while every replica decides;
3. **cut a replica's connections** (``pg_terminate_backend`` on its sessions).

After each fault (the log read from PostgreSQL in one snapshot, while the
replicas run):

- the log is gap-free: its entries are exactly ``0 .. head - 1``;
- every acknowledged decision (an answer with a log index) is in the log at
  its index, with the leaf hash (so the payload) its client was given, and its
  key has no other decision entry; no effect lacks its logged ALLOW and no
  acknowledged write is lost (:mod:`crash_effects`);
- every receipt given since the last check (and a sample of the older ones)
  verifies offline under the log key, fetched from a replica that covers it
  (the clients wait while it runs: on two cores, answers given during it would
  pile up for the next faster than it verifies them);
- after a database fault, every replica decides again (a logged answer) and
  is READY; the time that took and the requests refused meanwhile are
  counted. A refusal is a DENY naming its reason (not logged: its client
  sends the key again) or a 503; a 500, an unlogged ALLOW or an ALLOW
  without its receipt is a failure (:mod:`crash_clients`);
- every :data:`VERIFY_EVERY` faults and at the end, ``sop log verify``
  passes against the largest checkpoint a client holds;
- with a witness (the default: a `sop witness serve` process every replica
  publishes through, :mod:`replicas_fleet`), no replica ever raised the
  witness alarm (a fork or a rollback refused), and every checkpoint a replica
  published, cosigned by the witness, is the final log's tree at its size: the
  witness never cosigned two inconsistent checkpoints.

Run as a script (prints the counts; exit 1 on any failure)::

    PYTHONPATH=. python3 tests/slow/replicas_crash.py --kills 20 --pg-restarts 5 --cuts 5
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))  # served.py
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # served_witness.py

from crash_checks import check_keys, log_verify
from crash_clients import Ack, ClientLoad, Endpoint
from crash_effects import check_effects, read_pg_log
from crash_outages import Outages, Refusal
from crash_receipts import read_back
from pg_private import PrivatePostgres
from replicas_fleet import SCHEMA, Fleet, start_fleet

__all__ = [
    "LONG_OUTAGE",
    "RECOVERY_TIMEOUT",
    "Report",
    "attribute",
    "format_report",
    "main",
    "run_faults",
]

WINDOW_SLACK = 6.0
"""Seconds after a fault's recovery its refusals may still arrive (the pool's wait for a session
is 5 s): a refusal later than that, or before any fault, is a failure."""

UP_SECONDS = (0.5, 1.5)
"""How long the load runs before each fault (uniform, seeded)."""

DOWN_SECONDS = (0.2, 1.5)
"""How long PostgreSQL stays down in a restart (uniform, seeded)."""

LONG_OUTAGE = 25.0
"""Seconds PostgreSQL stays down in the last restart: past the pool's 5 s wait for a session and
the log's 20 s wait (``SETTLE_SECONDS``) for a failed write's outcome."""

RECOVERY_TIMEOUT = 60.0
"""A replica that has not decided again this long after the database came back fails the test."""

VERIFY_EVERY = 5
"""``sop log verify`` after every this many faults (and at the end)."""

OLD_SAMPLE = 32
"""Receipts re-verified after each fault among those verified before (all at the end)."""

CLIENTS = 12


@dataclass
class Report:
    """What a fault run did and what it found."""

    seed: int
    replicas: int = 3
    clients: int = 0
    kills: int = 0
    pg_restarts: int = 0
    cuts: int = 0
    rounds: int = 0
    sent: int = 0
    attempts: int = 0
    acknowledged: int = 0
    allowed: int = 0
    denied: int = 0
    retried: int = 0
    replayed: int = 0
    replayed_after_kill: int = 0
    resent: int = 0
    persists_sent: int = 0
    persists_acknowledged: int = 0
    persists_allowed: int = 0
    persists_written: int = 0
    persists_retried: int = 0
    persists_replayed: int = 0
    persists_refused: int = 0
    log_size: int = 0
    entries: int = 0
    effects_written: int = 0
    receipts_verified: int = 0
    writes_verified: int = 0
    read_back: int = 0
    log_verifies: int = 0
    state_checks: int = 0
    log_checks: int = 0
    witness: bool = True
    published_checked: int = 0
    refused: int = 0
    refused_logged: int = 0
    refusal_codes: dict[str, int] = field(default_factory=dict)
    refusal_samples: dict[str, list[str]] = field(default_factory=dict)
    recoveries: list[dict[str, object]] = field(default_factory=list)
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def attribute(
    refusals: Sequence[Refusal], windows: Sequence[tuple[float, float]]
) -> tuple[list[list[Refusal]], list[Refusal]]:
    """The refusals of each fault window (the last one begun before it), and those outside
    every window (before the first, or after the end of the last one begun)."""
    per: list[list[Refusal]] = [[] for _ in windows]
    outside = []
    for r in refusals:
        at = max((i for i, (t0, _) in enumerate(windows) if t0 <= r.at), default=None)
        if at is None or r.at > windows[at][1]:
            outside.append(r)
        else:
            per[at].append(r)
    return per, outside


class _Run:
    """One fault run's moving parts."""

    def __init__(
        self, base: Path, pg: PrivatePostgres, clients: int, seed: int, report: Report
    ) -> None:
        self.pg = pg
        self.rng = random.Random(seed)
        self.sampler = random.Random(seed + 1)
        self.report = report
        self.fleet: Fleet = start_fleet(base, pg.dsn, witness=report.witness)
        self.endpoints = [Endpoint(r.up.bridge) for r in self.fleet.replicas]
        self.outages = Outages()
        self.load = ClientLoad(
            self.fleet.prepared, self.endpoints, clients, seed, outages=self.outages
        )
        self.checked: set[int] = set()
        self.windows: list[tuple[float, float]] = []  # each fault's: from its start to recovery
        self.faulted: list[dict[str, object]] = []  # each fault's outcome, in the same order

    # ---- the faults -----------------------------------------------------------------
    def kill(self) -> dict[str, object]:
        """kill -9 a random replica mid-load, restart it, wait until it decides again."""
        n = self.rng.randrange(len(self.fleet.replicas))
        replica = self.fleet.replicas[n]
        self.endpoints[n].down()
        replica.up.kill()
        replica.server = None
        t0 = time.monotonic()
        self.check_log()  # as the kill left it, the others still writing
        acks = self.load.acks()  # its clients wait: what they hold, the restart must prove
        try:
            server = replica.start()
        except RuntimeError as exc:
            raise RuntimeError(f"replica {n} did not restart after a kill -9: {exc}") from None
        if server.vkey != self.fleet.vkey:
            why = httpx.get(f"{server.read}/health/ready", timeout=10).text
            raise RuntimeError(f"replica {n} restarted with log key `{server.vkey}`: {why}")
        t1 = time.monotonic()
        self.check_receipts(acks)
        t2 = time.monotonic()
        self.endpoints[n].up(server.bridge)
        back = self.outages.first_logged(n, t2, RECOVERY_TIMEOUT)
        return {
            "fault": "kill -9",
            "replica": n,
            "restart_s": round(t1 - t0, 2),
            "receipts_s": round(t2 - t1, 2),
            "decides_again_s": None if back is None else round(back - t2, 2),
            **self.recovered([n], t2, back, since=t0),
        }

    def pg_restart(self, k: int, long_down: float = 0.0) -> dict[str, object]:
        """Restart PostgreSQL mid-load (fast and immediate in turn), down for a random moment
        (or ``long_down`` seconds)."""
        mode = ("fast", "immediate")[k % 2]
        down = long_down or self.rng.uniform(*DOWN_SECONDS)
        t0 = time.monotonic()
        self.pg.restart(mode, down=down)
        t1 = time.monotonic()
        return {
            "fault": f"postgresql restart ({mode})",
            "down_s": round(t1 - t0, 2),
            **self.recovered(range(len(self.fleet.replicas)), t1, None, since=t0),
        }

    def cut(self) -> dict[str, object]:
        """Terminate a random replica's PostgreSQL sessions mid-load."""
        n = self.rng.randrange(len(self.fleet.replicas))
        t0 = time.monotonic()
        sessions = self.fleet.cut(n)
        return {
            "fault": "connections cut",
            "replica": n,
            "sessions": sessions,
            **self.recovered([n], t0, None, since=t0),
        }

    def recovered(
        self, replicas: Sequence[int] | range, after: float, back: float | None, since: float = 0.0
    ) -> dict[str, object]:
        """Wait until each of ``replicas`` logged an answer after ``after``; time and refusals."""
        firsts = {}
        for n in replicas:
            first = (
                back if back is not None else self.outages.first_logged(n, after, RECOVERY_TIMEOUT)
            )
            if first is None:
                self.report.failures.append(
                    f"replica {n} did not decide again within {RECOVERY_TIMEOUT} s of fault"
                    f" {self.report.rounds}"
                )
                continue
            firsts[n] = first
        end = max(firsts.values(), default=time.monotonic())
        self.windows.append((since or after, end + WINDOW_SLACK))
        not_ready = self.fleet.ready()
        self.report.failures.extend(f"after fault {self.report.rounds}: {w}" for w in not_ready)
        return {"recovered_s": round(end - after, 2)}

    def attribute_refusals(self) -> None:
        """Each refusal to the fault whose window holds it; one outside every window fails."""
        counts, outside = attribute(self.outages.refusals, self.windows)
        self.report.failures.extend(
            f"replica {r.replica} refused a request outside any fault: `{r.status}` `{r.code}`"
            f" {r.message[:200]}"
            for r in outside
        )
        for outcome, refusals in zip(self.faulted, counts, strict=True):
            outcome["refused"] = len(refusals)
            outcome["refused_codes"] = sorted({r.code for r in refusals})

    # ---- the checks -----------------------------------------------------------------
    def check_log(self, *, final: bool = False) -> dict[int, str]:
        """The log in PostgreSQL: gap-free, every ack at its index with its leaf, the effects;
        its leaf hashes (hex), by index."""
        report = self.report
        acks = self.load.acks()  # before the read: every one of them must be in it
        rows = read_pg_log(self.pg.dsn, SCHEMA)
        report.log_checks += 1
        report.log_size = len(rows.entries)
        if sorted(rows.entries) != list(range(rows.head or 0)):
            missing = sorted(set(range(rows.head or 0)) - rows.entries.keys())[:10]
            report.failures.append(
                f"after fault {report.rounds}: the log is not gap-free: head `{rows.head}`,"
                f" {len(rows.entries)} entries, missing {missing}"
            )
        for ack in acks:
            if rows.leaves.get(ack.log_index) != ack.leaf_hash:
                report.failures.append(
                    f"acknowledged key `{ack.key}` was given leaf `{ack.leaf_hash}` at"
                    f" `{ack.log_index}`; the log has `{rows.leaves.get(ack.log_index)}` there"
                )
        check_keys(rows, acks, report, final=final, refused=self.load.refused())
        found = check_effects(rows, acks)
        report.effects_written = found.written
        report.failures.extend(f"after fault {report.rounds}: {f}" for f in found.failures)
        return rows.leaves

    def check_receipts(self, acks: list[Ack]) -> None:
        """The receipts given since the last check, and a sample of the older ones; the
        clients wait meanwhile (they would pile up answers for the next check faster than
        this one verifies them on two cores), those in flight finish."""
        fresh = [a for a in acks if a.log_index not in self.checked]
        old = [a for a in acks if a.log_index in self.checked]
        sample = fresh + self.sampler.sample(old, min(OLD_SAMPLE, len(old)))
        with self.load.paused():
            self.fleet.check_receipts(sample, self.report)
        self.checked.update(a.log_index for a in fresh)

    def after_fault(self) -> None:
        """The checks every fault is followed by (a kill checked its log and receipts already)."""
        self.check_log()
        self.check_receipts(self.load.acks())
        self.fleet.watch_witness(self.report)
        if self.report.rounds % VERIFY_EVERY == 0:
            log_verify(self.fleet.prepared.data_dir, self.fleet.vkey, self.load.acks(), self.report)

    def finish(self) -> None:
        """Stop the clients, check everything, stop the replicas."""
        report = self.report
        self.load.stop()
        acks = self.load.acks()
        self.fleet.check_receipts(acks, report)  # every one of them
        server = self.fleet.covering(max((a.log_index for a in acks), default=0))
        if server is not None:
            read_back(server, self.fleet.prepared, self.sampler.sample(acks, len(acks)), 24, report)
        log_verify(self.fleet.prepared.data_dir, self.fleet.vkey, acks, report)
        self.fleet.watch_witness(report)
        report.failures.extend(self.fleet.stop())
        leaves = self.check_log(final=True)
        report.published_checked = self.fleet.check_published(leaves, report)
        self.load.count(report)
        report.failures.extend(self.load.failures)
        self.attribute_refusals()
        report.refused = len(self.outages.refusals)
        report.refused_logged = sum(r.logged for r in self.outages.refusals)
        report.refusal_codes = self.outages.codes()
        for r in self.outages.refusals:  # what each reason said, its first two distinct texts
            said = report.refusal_samples.setdefault(r.code, [])
            if len(said) < 2 and r.message not in said:
                said.append(r.message)


def run_faults(
    base: Path,
    *,
    kills: int = 20,
    pg_restarts: int = 5,
    long_outage: float = LONG_OUTAGE,
    cuts: int = 5,
    clients: int = CLIENTS,
    seed: int = 0,
    witness: bool = True,
    progress: Callable[[str], None] = lambda _line: None,
) -> Report:
    """Run the faults one after the other under load; check after each.

    Args:
        base: An empty directory for the data directories and certificates.
        kills: How many times a random replica is killed (and restarted).
        pg_restarts: How many times PostgreSQL is restarted.
        long_outage: How long PostgreSQL stays down in the last restart (0: a moment, as
            the others): longer than a replica waits for a session or for a failed write's
            outcome, so its log must take entries again after giving up.
        cuts: How many times a random replica's database sessions are terminated.
        clients: How many concurrent clients, spread over the replicas.
        seed: Seeds the fault moments, the replicas chosen and the load.
        witness: Run a witness the replicas publish through, and check what it cosigned.
        progress: Called with one line per fault.

    Returns:
        The counts and every failure found (empty: every check passed).

    Raises:
        RuntimeError: PostgreSQL or a replica did not start.
    """
    started = time.monotonic()
    report = Report(seed=seed, clients=clients, witness=witness)
    pg = PrivatePostgres()
    run: _Run | None = None
    try:
        run = _Run(base, pg, clients, seed, report)
        run.load.start()
        faults: list[Callable[[], dict[str, object]]] = [run.kill] * kills
        faults += [
            functools.partial(run.pg_restart, k, long_outage if k == pg_restarts - 1 else 0.0)
            for k in range(pg_restarts)
        ]
        faults += [run.cut] * cuts
        for fault in faults:
            time.sleep(run.rng.uniform(*UP_SECONDS))
            report.rounds += 1
            outcome = fault()
            report.recoveries.append(outcome)
            run.faulted.append(outcome)
            run.after_fault()
            progress(f"fault {report.rounds}: {json.dumps(outcome)}")
            name = str(outcome["fault"])
            report.kills += name == "kill -9"
            report.pg_restarts += name.startswith("postgresql")
            report.cuts += name == "connections cut"
        time.sleep(run.rng.uniform(*UP_SECONDS))
        run.finish()
    except BaseException:
        if run is not None:
            run.load.stopping.set()
            for endpoint in run.endpoints:
                endpoint.close()
            run.fleet.kill_all()
        raise
    finally:
        pg.close()
    report.seconds = round(time.monotonic() - started, 1)
    return report


def format_report(report: Report) -> str:
    """The counts, the recoveries (one line each) and the failures."""
    skip = ("failures", "recoveries", "refusal_samples")
    counts = {k: v for k, v in report.to_dict().items() if k not in skip}
    lines = ["replicas faults: " + ", ".join(f"{k} {v}" for k, v in counts.items())]
    lines += [f"  {json.dumps(r)}" for r in report.recoveries]
    db = [r for r in report.recoveries if str(r["fault"]).startswith("postgresql")]
    if db:
        rec = sorted(float(r["recovered_s"]) for r in db)  # type: ignore[arg-type]
        lines.append(
            f"  postgresql restarts: {len(db)}, every replica deciding again within"
            f" {rec[len(rec) // 2]:.2f} s (median) / {rec[-1]:.2f} s (max) of the server's return;"
            f" {sum(int(r['refused']) for r in db)} requests refused"  # type: ignore[call-overload]
        )
    lines += [f"  refused `{c}`: {m}" for c, ms in report.refusal_samples.items() for m in ms]
    lines += [f"  FAILURE: {f}" for f in report.failures[:50]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run from the command line; exit 1 on any failure."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--kills", type=int, default=20, help="replica kills (default 20)")
    p.add_argument("--pg-restarts", type=int, default=5, help="PostgreSQL restarts (default 5)")
    p.add_argument("--cuts", type=int, default=5, help="connection cuts (default 5)")
    p.add_argument(
        "--long-outage",
        type=float,
        default=LONG_OUTAGE,
        help=f"seconds down in the last PostgreSQL restart (default {LONG_OUTAGE:g}; 0: short)",
    )
    p.add_argument("--clients", type=int, default=CLIENTS, help=f"clients (default {CLIENTS})")
    p.add_argument("--seed", type=int, default=None, help="seed (default random)")
    p.add_argument("--json", type=Path, default=None, help="write the report as JSON here")
    p.add_argument("--no-witness", action="store_true", help="no witness process")
    args = p.parse_args(argv)
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    print(f"seed {seed}", flush=True)
    with tempfile.TemporaryDirectory(prefix="sop-faults-") as tmp:
        report = run_faults(
            Path(tmp),
            kills=args.kills,
            pg_restarts=args.pg_restarts,
            long_outage=args.long_outage,
            cuts=args.cuts,
            clients=args.clients,
            seed=seed,
            witness=not args.no_witness,
            progress=lambda line: print(line, flush=True),
        )
    print(format_report(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return 1 if report.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
