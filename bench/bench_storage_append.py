"""Benchmark of durable log appends on SQLite and PostgreSQL, side by side (not a test).

Both backends as SOP runs them: the state key set (every transaction closes
the state seal), the persistence index followed (each batch's unit of work
applied in its transaction), the log opened with a checkpoint key (a signed
checkpoint per batch). Measured, in one run:

* ``batch64``: one caller appending batches of 64 entries (``append_many``),
  each batch one durable transaction: entries/s, and the batch's p50/p99;
* ``group``: 64 threads appending one entry at a time through group commit
  (the leader takes whatever queued): entries/s and the mean batch it formed;
* ``single``: one caller appending one entry at a time (one transaction per
  entry, the floor group commit exists to avoid).

PostgreSQL is the machine's server (``SOP_BENCH_POSTGRES_DSN``, default
127.0.0.1:5432, database ``test``), in a fresh schema dropped afterwards;
SQLite is a file in a temporary directory (WAL, ``synchronous=FULL``).

Run: ``python bench/bench_storage_append.py`` (``--batches``, ``--seconds``,
``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from sop_verified.core.persistence import index_entries
from sop_verified.storage.ports import StorageBackend
from sop_verified.storage.postgres import PostgresBackend
from sop_verified.storage.sqlite import SQLiteBackend
from sop_verified.tools.signed_note import Signer, generate

ORIGIN = "bench.local/log"
KEY = bytes(range(32))
DSN = os.environ.get("SOP_BENCH_POSTGRES_DSN", "host=127.0.0.1 port=5432 dbname=test user=postgres")


def _payload(i: int) -> bytes:
    return (
        b'{"effect":"DENY","i":%d,"request":{"action":"artifact.read","principal":"drac",'
        b'"resource":"artifacts/drac/x","pad":"%s"}}' % (i, b"x" * 80)
    )


@contextmanager
def _sqlite() -> Iterator[StorageBackend]:
    with tempfile.TemporaryDirectory() as tmp:
        backend = SQLiteBackend.open(Path(tmp) / "sop.db", state_key=KEY)
        try:
            yield backend
        finally:
            backend.close()


@contextmanager
def _postgres() -> Iterator[StorageBackend]:
    schema = f"sop_bench_{secrets.token_hex(6)}"
    backend = PostgresBackend.open(DSN, schema=schema, state_key=KEY)
    try:
        yield backend
    finally:
        backend.close()
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def _prepared(backend: StorageBackend, signer: Signer) -> Any:
    backend.set_entry_indexer(index_entries)
    return backend.log.open(signer=signer, origin=ORIGIN)


def _batch64(backend: StorageBackend, signer: Signer, batches: int) -> dict[str, float]:
    log = _prepared(backend, signer)
    times = []
    at = 0
    for _ in range(batches):
        payloads = [_payload(at + k) for k in range(64)]
        t0 = time.perf_counter()
        log.append_many(payloads)
        times.append(time.perf_counter() - t0)
        at += 64
    times.sort()
    return {
        "entries_per_s": 64 * batches / sum(times),
        "batch_p50_ms": 1000 * statistics.median(times),
        "batch_p99_ms": 1000 * times[int(0.99 * (len(times) - 1))],
    }


def _group(backend: StorageBackend, signer: Signer, seconds: float) -> dict[str, float]:
    log = _prepared(backend, signer)
    stop = time.perf_counter() + seconds
    counts = [0] * 64
    start_size = log.size
    batches_before = _count_checkpoints(backend)

    def work(w: int) -> None:
        n = 0
        while time.perf_counter() < stop:
            log.append(_payload(w * 1_000_000 + n))
            n += 1
        counts[w] = n

    threads = [threading.Thread(target=work, args=(w,)) for w in range(64)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    total = sum(counts)
    checkpoints = _count_checkpoints(backend) - batches_before
    return {
        "entries_per_s": total / elapsed,
        "mean_batch": total / max(1, checkpoints),
        "entries": float(log.size - start_size),
    }


def _count_checkpoints(backend: StorageBackend) -> int:
    if isinstance(backend, PostgresBackend):
        return int(backend._db.query("SELECT count(*) FROM log_checkpoints")[0][0])
    if isinstance(backend, SQLiteBackend):
        return int(backend._db.query("SELECT count(*) FROM log_checkpoints")[0][0])
    return 0


def _single(backend: StorageBackend, signer: Signer, seconds: float) -> dict[str, float]:
    log = _prepared(backend, signer)
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        log.append(_payload(n))
        n += 1
    return {"entries_per_s": n / (time.perf_counter() - t0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=300, help="batches of 64 per backend")
    parser.add_argument("--seconds", type=float, default=3.0, help="per concurrent/single run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    signer = Signer.from_string(generate(ORIGIN)[0])
    backends: dict[str, Callable[[], Any]] = {"sqlite": _sqlite, "postgresql": _postgres}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, opener in backends.items():
        out[name] = {}
        with opener() as b:
            out[name]["batch64"] = _batch64(b, signer, args.batches)
        with opener() as b:
            out[name]["group"] = _group(b, signer, args.seconds)
        with opener() as b:
            out[name]["single"] = _single(b, signer, args.seconds)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(
        f"{'backend':<11} {'batch64 e/s':>12} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'group64 e/s':>12} {'mean batch':>10} {'single e/s':>11}"
    )
    for name, r in out.items():
        print(
            f"{name:<11} {r['batch64']['entries_per_s']:>12,.0f}"
            f" {r['batch64']['batch_p50_ms']:>7.2f} {r['batch64']['batch_p99_ms']:>7.2f}"
            f" {r['group']['entries_per_s']:>12,.0f} {r['group']['mean_batch']:>10.1f}"
            f" {r['single']['entries_per_s']:>11,.0f}"
        )
    ratio = (
        out["postgresql"]["batch64"]["entries_per_s"] / out["sqlite"]["batch64"]["entries_per_s"]
    )
    print(f"postgresql / sqlite, batches of 64: {ratio:.2f}")


if __name__ == "__main__":
    main()
