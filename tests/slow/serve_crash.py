"""Kill -9 `sop serve` under load, restart it, and check that nothing acknowledged was lost.

The crash test of issue 14. Concurrent clients (threads, one ``httpx.Client``
each, mutual TLS as ``drac``) send ``POST /v1/decide`` requests, ALLOW and
DENY mixed, and (a third) ``POST /v1/persist`` of small random bytes, each
with its own ``Idempotency-Key``, and keep every answer. The server is
killed (SIGKILL) at seeded random moments and restarted on the same data
directory (new ephemeral ports). A request that was in flight at the kill
gets a connection error; its client retries it, with the same key (and the
same bytes), against the restarted server. Checked:

- after every restart, before the clients are let back in, the receipts they
  were given still verify: each acknowledged decision's tlog-proof, fetched
  from the restarted server's ``/v1/receipts/{index}``, verifies offline
  under the log key and proves the leaf hash the client was given at the time
  (new acknowledgements all, older ones a sample; all of them at the end);
  an acknowledged persist's write receipt (its ``persist.effect`` entry)
  verifies the same way, and a sample of the persisted objects read back
  through ``POST /v1/read`` are the bytes sent;
- every few kills (between the kill and the restart, when no server holds the
  lock) and at the end, ``sop log verify`` exits 0, under the key the first
  server printed and against the largest checkpoint a client was given (a
  lost tail would be a rollback below it), and ``sop state check`` exits 0
  (the persistence index and every derived row are the log's projection);
- after every kill (before the restart, from the log as the kill left it)
  and at the end: no idempotency key has two decision entries; the one entry
  a key has is at the index its client was acknowledged with; no effect
  exists without its logged ALLOW, no key has two effects, and no
  acknowledged write is lost (:mod:`crash_effects`);
- a retry answered from the log (``replayed`` true) comes only for a key sent
  before, and carries the first decision's index and leaf hash. Every client
  also "loses" some answers on purpose and resends their keys after the next
  restart: those must all come back replayed, same index, same leaf.

Run as a script::

    PYTHONPATH=. python3 tests/slow/serve_crash.py --rounds 20 --clients 16 --seed 7
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))  # served.py

from crash_checks import check_keys, log_verify, state_check
from crash_clients import PERSIST_BYTES, Ack, ClientLoad, Endpoint
from crash_effects import EffectCounts, check_effects, read_log, stored_files
from crash_receipts import check_receipts, read_back
from served import Prepared, Served, prepare

__all__ = [
    "OLD_SAMPLE",
    "READ_SAMPLE",
    "UP_SECONDS",
    "VERIFY_EVERY",
    "Report",
    "format_report",
    "main",
    "run_crash",
]

UP_SECONDS = (0.4, 1.8)
"""How long a server runs under load before it is killed (uniform, seeded)."""

VERIFY_EVERY = 5
"""``sop log verify`` after every this many kills (and at the end)."""

OLD_SAMPLE = 48
"""Receipts re-verified per restart among those verified before (all at the end)."""

READ_SAMPLE = 6
"""Persisted objects read back through ``POST /v1/read`` per restart (4 times this at the end)."""


@dataclass
class Report:
    """What a crash run did and what it found."""

    seed: int
    rounds: int = 0
    clients: int = 0
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
    entries: int = 0
    effects: int = 0
    effects_written: int = 0
    effects_refused: int = 0
    effects_aborted: int = 0
    effect_keys: int = 0
    inline_blobs: int = 0
    files: int = 0
    receipts_verified: int = 0
    writes_verified: int = 0
    read_back: int = 0
    log_verifies: int = 0
    state_checks: int = 0
    effect_checks: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def run_crash(
    base: Path,
    *,
    rounds: int = 20,
    clients: int = 16,
    seed: int = 0,
    persist_bytes: tuple[int, int] = PERSIST_BYTES,
    progress: Callable[[str], None] = lambda _line: None,
) -> Report:
    """Run ``rounds`` kills and restarts under load from ``clients`` threads.

    Args:
        base: An empty directory for the data directory, certificates and kept checkpoints.
        rounds: How many times the server is killed (and restarted).
        clients: How many concurrent clients.
        seed: Seeds the kill moments, the ALLOW/DENY mix and the receipt samples.
        persist_bytes: The smallest and the largest persist (default :data:`PERSIST_BYTES`).
        progress: Called with one line per round.

    Returns:
        The counts and every failure found (empty: every check passed).

    Raises:
        RuntimeError: a restart failed (the server did not come up on its data directory).
    """
    started = time.monotonic()
    rng = random.Random(seed)
    ups = [rng.uniform(*UP_SECONDS) for _ in range(rounds + 1)]  # the kill moments: the seed's
    sampler = random.Random(seed + 1)
    report = Report(seed=seed, clients=clients)
    prepared = prepare(base, reads=True)
    server = Served(prepared.data_dir)
    vkey = server.vkey
    endpoint = Endpoint(server.bridge)
    load = ClientLoad(prepared, endpoint, clients, seed, persist_bytes)
    load.start()
    checked: set[int] = set()
    try:
        for n in range(1, rounds + 1):
            time.sleep(ups[n - 1])
            endpoint.down()
            server.kill()
            report.rounds = n
            t0 = time.monotonic()
            _check_log(
                prepared, load.acks(), report, final=False, refused=load.refused()
            )  # as the kill left it
            if n % VERIFY_EVERY == 0:
                log_verify(prepared.data_dir, vkey, load.acks(), report)
                state_check(prepared.data_dir, vkey, report)
            t1 = time.monotonic()
            server = _restart(prepared, vkey)
            t2 = time.monotonic()
            acks = load.acks()  # the clients wait for the endpoint: nothing is added meanwhile
            fresh = [a for a in acks if a.log_index not in checked]
            old = [a for a in acks if a.log_index in checked]
            sample = fresh + sampler.sample(old, min(OLD_SAMPLE, len(old)))
            check_receipts(server, vkey, sample, report)
            read_back(server, prepared, sampler.sample(acks, len(acks)), READ_SAMPLE, report)
            checked.update(a.log_index for a in fresh)
            endpoint.up(server.bridge)
            progress(
                f"round {n}: {len(acks)} acknowledged, {len(sample)} receipts checked"
                f" (verify {t1 - t0:.1f} s, restart {t2 - t1:.1f} s,"
                f" receipts {time.monotonic() - t2:.1f} s)"
            )
        time.sleep(ups[rounds])
    except BaseException:
        load.stopping.set()
        endpoint.close()  # no server will answer the clients now
        load.stop()
        server.kill()
        raise
    t0 = time.monotonic()
    load.stop()
    t1 = time.monotonic()
    check_receipts(server, vkey, load.acks(), report)  # all of them, on the last restart
    final = load.acks()
    read_back(server, prepared, sampler.sample(final, len(final)), 4 * READ_SAMPLE, report)
    t2 = time.monotonic()
    status = server.stop()
    if status != 0:
        report.failures.append(f"the last server exited `{status}` on SIGTERM: {server.stderr()}")
    t3 = time.monotonic()
    log_verify(prepared.data_dir, vkey, load.acks(), report)
    state_check(prepared.data_dir, vkey, report)
    t4 = time.monotonic()
    _check_log(prepared, load.acks(), report, final=True, refused=load.refused())
    progress(
        f"end: clients {t1 - t0:.1f} s, receipts {t2 - t1:.1f} s, stop {t3 - t2:.1f} s,"
        f" verify {t4 - t3:.1f} s, keys and effects {time.monotonic() - t4:.1f} s"
    )
    load.count(report)
    report.failures.extend(load.failures)
    report.seconds = round(time.monotonic() - started, 1)
    return report


def _restart(prepared: Prepared, vkey: str) -> Served:
    try:
        server = Served(prepared.data_dir)
    except RuntimeError as exc:
        raise RuntimeError(f"the server did not restart after a kill -9: {exc}") from None
    if server.vkey != vkey:
        raise RuntimeError(f"the restarted server has log key `{server.vkey}`, not `{vkey}`")
    return server


def _check_log(
    prepared: Prepared,
    acks: Sequence[Ack],
    report: Report,
    *,
    final: bool,
    refused: Sequence[tuple[str, int, int]] = (),
) -> None:
    """The keys' decisions and the effects, from the log as the kill (or the stop) left it.

    At the end (``final``) the server was stopped: every logged key was answered,
    and every file under the scope roots is the object of a written effect.
    """
    rows = read_log(prepared.data_dir)
    check_keys(rows, acks, report, final=final, refused=refused)
    found = check_effects(rows, acks, files=stored_files(prepared.data_dir) if final else None)
    _count_effects(found, report)
    report.failures.extend(f"after round {report.rounds}: {f}" for f in found.failures)


def _count_effects(found: EffectCounts, report: Report) -> None:
    report.effect_checks += 1
    report.effects, report.effects_written = found.effects, found.written
    report.effects_refused, report.effects_aborted = found.refused, found.aborted
    report.effect_keys, report.inline_blobs, report.files = (
        found.keys,
        found.inline_blobs,
        found.files,
    )


def format_report(report: Report) -> str:
    """The counts, one line, and the failures after it."""
    counts = {k: v for k, v in report.to_dict().items() if k != "failures"}
    lines = ["serve crash: " + ", ".join(f"{k} {v}" for k, v in counts.items())]
    lines += [f"  FAILURE: {f}" for f in report.failures[:50]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run from the command line; exit 1 on any failure."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--rounds", type=int, default=20, help="kills and restarts (default 20)")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    p.add_argument("--seed", type=int, default=None, help="seed (default random)")
    p.add_argument("--json", type=Path, default=None, help="write the report as JSON here")
    p.add_argument(
        "--persist-bytes",
        type=int,
        nargs=2,
        default=list(PERSIST_BYTES),
        metavar=("MIN", "MAX"),
        help="sizes of the persisted bytes (default 200 4096)",
    )
    args = p.parse_args(argv)
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    print(f"seed {seed}", flush=True)
    with tempfile.TemporaryDirectory(prefix="sop-crash-") as tmp:
        report = run_crash(
            Path(tmp),
            rounds=args.rounds,
            clients=args.clients,
            seed=seed,
            persist_bytes=(args.persist_bytes[0], args.persist_bytes[1]),
            progress=lambda line: print(line, flush=True),
        )
    print(format_report(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return 1 if report.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
