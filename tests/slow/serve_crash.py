"""Kill -9 `sop serve` under load, restart it, and check that nothing acknowledged was lost.

The crash test of issue 14. Concurrent clients (threads, one ``httpx.Client``
each, mutual TLS as ``drac``) send ``POST /v1/decide`` requests, ALLOW and
DENY mixed, each with its own ``Idempotency-Key``, and keep every answer. The
server is killed (SIGKILL) at seeded random moments and restarted on the same
data directory (new ephemeral ports). A request that was in flight at the kill
gets a connection error; its client retries it, with the same key, against the
restarted server. Checked:

- after every restart, before the clients are let back in, the receipts they
  were given still verify: each acknowledged decision's tlog-proof, fetched
  from the restarted server's
  ``/v1/receipts/{index}``, verifies offline under the log key and proves the
  leaf hash the client was given at the time (new acknowledgements all, older
  ones a sample; all of them at the end);
- every few kills (between the kill and the restart, when no server holds the
  lock) and at the end, ``sop log verify`` exits 0, under the key the first
  server printed and against the largest checkpoint a client was given (a
  lost tail would be a rollback below it);
- no idempotency key has two decision entries in the log; the one entry a key
  has is at the index its client was acknowledged with;
- a retry answered from the log (``replayed`` true) comes only for a key sent
  before, and carries the first decision's index and leaf hash. Every client
  also "loses" some answers on purpose and resends their keys after the next
  restart: those must all come back replayed, same index, same leaf.

No effect without its logged ALLOW: ``/v1/decide`` has no effects, and the
bridge plane has no persist endpoint yet, so this part of the issue's crash
test is not exercised here.

Run as a script::

    PYTHONPATH=. python3 tests/slow/serve_crash.py --rounds 20 --clients 16 --seed 7
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))  # served.py

from crash_clients import Ack, ClientLoad, Endpoint
from served import Prepared, Served, prepare

from sop_verified import SOP, Verifier, verify_receipt
from sop_verified.errors import SOPError

__all__ = [
    "OLD_SAMPLE",
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
    entries: int = 0
    receipts_verified: int = 0
    log_verifies: int = 0
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
    progress: Callable[[str], None] = lambda _line: None,
) -> Report:
    """Run ``rounds`` kills and restarts under load from ``clients`` threads.

    Args:
        base: An empty directory for the data directory, certificates and kept checkpoints.
        rounds: How many times the server is killed (and restarted).
        clients: How many concurrent clients.
        seed: Seeds the kill moments, the ALLOW/DENY mix and the receipt samples.
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
    prepared = prepare(base)
    server = Served(prepared.data_dir)
    vkey = server.vkey
    endpoint = Endpoint(server.bridge)
    load = ClientLoad(prepared, endpoint, clients, seed)
    load.start()
    checked: set[int] = set()
    try:
        for n in range(1, rounds + 1):
            time.sleep(ups[n - 1])
            endpoint.down()
            server.kill()
            report.rounds = n
            t0 = time.monotonic()
            if n % VERIFY_EVERY == 0:
                _log_verify(prepared, vkey, load.acks(), report)
            t1 = time.monotonic()
            server = _restart(prepared, vkey)
            t2 = time.monotonic()
            acks = load.acks()  # the clients wait for the endpoint: nothing is added meanwhile
            fresh = [a for a in acks if a.log_index not in checked]
            old = [a for a in acks if a.log_index in checked]
            sample = fresh + sampler.sample(old, min(OLD_SAMPLE, len(old)))
            _check_receipts(server, vkey, sample, report)
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
    _check_receipts(server, vkey, load.acks(), report)  # all of them, on the last restart
    t2 = time.monotonic()
    status = server.stop()
    if status != 0:
        report.failures.append(f"the last server exited `{status}` on SIGTERM: {server.stderr()}")
    t3 = time.monotonic()
    _log_verify(prepared, vkey, load.acks(), report)
    t4 = time.monotonic()
    _check_keys(prepared, load.acks(), report)
    progress(
        f"end: clients {t1 - t0:.1f} s, receipts {t2 - t1:.1f} s, stop {t3 - t2:.1f} s,"
        f" verify {t4 - t3:.1f} s, keys {time.monotonic() - t4:.1f} s"
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


def _check_receipts(server: Served, vkey: str, acks: Sequence[Ack], report: Report) -> None:
    """Every acknowledged decision is still in the restarted log, at its index, same leaf."""
    verifier = Verifier.from_string(vkey)
    with httpx.Client(base_url=server.read, timeout=60) as http:
        for ack in acks:
            answer = http.get(f"/v1/receipts/{ack.log_index}")
            if answer.status_code != 200:
                report.failures.append(
                    f"acknowledged decision `{ack.log_index}` (key `{ack.key}`) is not in the"
                    f" restarted log: `{answer.status_code}` {answer.text[:200]}"
                )
                continue
            try:
                got = verify_receipt(
                    answer.text, [verifier], expected_leaf=bytes.fromhex(ack.leaf_hash)
                )
                entry = json.loads(got.payload or b"{}")
            except (SOPError, ValueError) as exc:
                report.failures.append(
                    f"the receipt of acknowledged decision `{ack.log_index}` does not verify: {exc}"
                )
                continue
            said = (entry.get("transport") or {}).get("idempotency_key"), entry.get("effect")
            if got.index != ack.log_index or said != (ack.key, ack.effect):
                report.failures.append(
                    f"entry `{got.index}` holds `{said}`, acknowledged `{(ack.key, ack.effect)}`"
                    f" at `{ack.log_index}`"
                )
                continue
            report.receipts_verified += 1


def _log_verify(prepared: Prepared, vkey: str, acks: Sequence[Ack], report: Report) -> None:
    """``sop log verify`` under the first key, against the largest checkpoint a client holds."""
    cmd = [sys.executable, "-m", "sop_verified.cli", "log", "verify"]
    cmd += ["--data-dir", str(prepared.data_dir), "--vkey", vkey, "--json"]
    if acks:
        kept = max(acks, key=lambda a: a.tree_size)
        path = prepared.data_dir.parent / f"kept-checkpoint-{kept.tree_size}"
        path.write_text(kept.checkpoint)
        cmd += ["--checkpoint", str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    report.log_verifies += 1
    if done.returncode != 0:
        report.failures.append(
            f"`sop log verify` exited `{done.returncode}` after round {report.rounds}:"
            f" {done.stdout[-600:]} {done.stderr[-600:]}"
        )


def _check_keys(prepared: Prepared, acks: Sequence[Ack], report: Report) -> None:
    """Each key: at most one decision entry, at the index its client was acknowledged with."""
    with SOP.boot(prepared.data_dir) as sop:
        rows = sop.store.log.log_entries(0)
    by_key: dict[str, list[int]] = {}
    for index, _leaf, payload in rows:
        entry = json.loads(payload)
        key = (entry.get("transport") or {}).get("idempotency_key")
        if entry.get("type") == "decision" and key is not None:
            by_key.setdefault(key, []).append(index)
    report.entries = sum(len(v) for v in by_key.values())
    for key, indexes in by_key.items():
        if len(indexes) > 1:
            report.failures.append(f"idempotency key `{key}` has {len(indexes)} entries: {indexes}")
    for ack in acks:
        if by_key.get(ack.key, [])[:1] != [ack.log_index]:
            report.failures.append(
                f"key `{ack.key}` was acknowledged at `{ack.log_index}`;"
                f" the log has it at `{by_key.get(ack.key)}`"
            )
    unanswered = by_key.keys() - {a.key for a in acks}
    if unanswered:
        report.failures.append(f"logged keys no client was answered for: {sorted(unanswered)[:5]}")


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
    args = p.parse_args(argv)
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    print(f"seed {seed}", flush=True)
    with tempfile.TemporaryDirectory(prefix="sop-crash-") as tmp:
        report = run_crash(
            Path(tmp),
            rounds=args.rounds,
            clients=args.clients,
            seed=seed,
            progress=lambda line: print(line, flush=True),
        )
    print(format_report(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return 1 if report.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
