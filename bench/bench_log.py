"""Benchmark of the tamper-evident log (not a test), side by side with pymerkle's SqliteTree.

Measures, on this machine, with SQLite in WAL mode and ``synchronous=FULL``:

* bulk append, one durable transaction (and one signed checkpoint) per batch;
* group commit: 32 threads appending one entry each at a time, every append
  acknowledged only after its batch's transaction committed;
* inclusion proof generation at the full size (random indices) and its
  verification (RFC 9162 section 2.1.3.2);
* boot on the large log: time and memory to rebuild the tree state from the tail;
* pymerkle 7 ``SqliteTree`` on the same machine (one transaction per bulk call,
  leaves only: no stored nodes, no checkpoints): bulk append and inclusion
  proofs at 100,000 entries (its consistency proofs are not RFC 9162's, so
  they are not compared).

Run: ``python bench/bench_log.py`` (1M entries), ``--size 10000000`` for the
slow 10M run, ``--json`` for machine output.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

from sop_verified.storage.sqlite import SQLiteBackend
from sop_verified.tools.merkle import verify_inclusion
from sop_verified.tools.signed_note import Signer, generate

ORIGIN = "bench.local/log"
BATCH = 100_000
PEER_SIZE = 100_000


def _payloads(start: int, n: int) -> list[bytes]:
    pad = "x" * 120
    return [
        b'{"effect":"ALLOW","i":%d,"request":{"action":"artifact.persist","pad":"%s"}}'
        % (i, pad.encode())
        for i in range(start, start + n)
    ]


def _us(seconds: float) -> float:
    return round(seconds * 1e6, 1)


def bench_bulk(store: SQLiteBackend, size: int) -> dict[str, Any]:
    rates = []
    for start in range(0, size, BATCH):
        batch = _payloads(start, min(BATCH, size - start))
        t0 = time.perf_counter()
        store.log.opened.append_many(batch)
        rates.append(len(batch) / (time.perf_counter() - t0))
    return {"entries": size, "median_per_s": round(statistics.median(rates)), "batches": len(rates)}


def bench_group_commit(store: SQLiteBackend, threads: int = 32, each: int = 200) -> dict[str, Any]:
    latencies: list[float] = []
    lock = threading.Lock()

    def work(w: int) -> None:
        mine = []
        for i in range(each):
            payload = b'{"w":%d,"i":%d}' % (w, i)
            t0 = time.perf_counter()
            store.log.append(payload)
            mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)

    pool = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
    t0 = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - t0
    latencies.sort()
    return {
        "threads": threads,
        "ops_per_s": round(threads * each / elapsed),
        "p50_ms": round(latencies[len(latencies) // 2] * 1e3, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1e3, 2),
    }


def bench_proofs(store: SQLiteBackend, size: int, n: int = 20_000) -> dict[str, Any]:
    log = store.log.opened
    rng = random.Random(1)
    indices = [rng.randrange(size) for _ in range(n)]
    for i in indices[:2000]:  # warm the cache of upper tiles
        log.inclusion_proof(i, size)
    samples, proofs = [], []
    for i in indices:
        t0 = time.perf_counter()
        proofs.append(log.inclusion_proof(i, size))
        samples.append(time.perf_counter() - t0)
    root = log.root()
    payloads = {i: store.log.log_entries(i, i + 1)[0][1] for i in indices[:5000]}
    t0 = time.perf_counter()
    for i, proof in zip(indices[:5000], proofs[:5000], strict=True):
        verify_inclusion(payloads[i], i, size, proof, root)
    verify_s = time.perf_counter() - t0
    samples.sort()
    return {
        "size": size,
        "median_us": _us(statistics.median(samples)),
        "p99_us": _us(samples[int(len(samples) * 0.99)]),
        "verify_per_s": round(5000 / verify_s),
    }


def bench_boot(path: Path, signer: Signer) -> dict[str, Any]:
    tracemalloc.start()
    t0 = time.perf_counter()
    store = SQLiteBackend.open(path)
    log = store.log.open(origin=ORIGIN, signer=signer)
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    state = log._state  # the whole in-memory tree state
    out = {
        "size": log.size,
        "seconds": round(elapsed, 4),
        "peak_kib": round(peak / 1024, 1),
        "frontier_hashes": len(state.frontier),
    }
    store.close()
    return out


def bench_pymerkle(tmp: Path, size: int = PEER_SIZE, n: int = 500) -> dict[str, Any]:
    from pymerkle import SqliteTree  # noqa: PLC0415 - optional bench dependency

    tree = SqliteTree(str(tmp / "pymerkle.db"))
    data = _payloads(0, size)
    t0 = time.perf_counter()
    tree.append_entries(data)
    append_s = time.perf_counter() - t0
    rng = random.Random(2)
    samples = []
    for _ in range(n):
        i = rng.randrange(1, size + 1)  # pymerkle indices are 1-based
        t0 = time.perf_counter()
        tree.prove_inclusion(i, size)
        samples.append(time.perf_counter() - t0)
    tree.close()
    return {
        "entries": size,
        "append_per_s": round(size / append_s),
        "proof_median_us": _us(statistics.median(samples)),
    }


def run(size: int) -> dict[str, Any]:
    signer = Signer.from_string(generate(ORIGIN)[0])
    with tempfile.TemporaryDirectory(prefix="sop-bench-log-") as tmp:
        path = Path(tmp) / "sop.db"
        store = SQLiteBackend.open(path)
        store.log.open(origin=ORIGIN, signer=signer)
        small = SQLiteBackend.open(Path(tmp) / "small.db")
        small.log.open(origin=ORIGIN, signer=signer)
        small.log.opened.append_many(_payloads(0, PEER_SIZE))
        result = {
            "bulk_append": bench_bulk(store, size),
            "inclusion": bench_proofs(store, size),
            "inclusion_at_100k": bench_proofs(small, PEER_SIZE, 5000),
            "group_commit": bench_group_commit(small),
        }
        store.close()
        small.close()
        result["boot"] = bench_boot(path, signer)
        result["pymerkle_sqlitetree"] = bench_pymerkle(Path(tmp))
    return result


def _table(r: dict[str, Any]) -> str:
    peer, inc, small = r["pymerkle_sqlitetree"], r["inclusion"], r["inclusion_at_100k"]
    gc, boot = r["group_commit"], r["boot"]
    ratio = peer["proof_median_us"] / small["median_us"]
    rows = [
        (
            "bulk append, durable per batch",
            f"{r['bulk_append']['median_per_s']:,}/s",
            ">= 100,000/s",
            f"pymerkle {peer['append_per_s']:,}/s (stores leaves only, signs nothing)",
        ),
        (
            f"inclusion proof at {inc['size']:,}",
            f"{inc['median_us']} us (p99 {inc['p99_us']})",
            "<= 50 us",
            "",
        ),
        (
            "inclusion proof at 100,000",
            f"{small['median_us']} us",
            "",
            f"pymerkle {peer['proof_median_us']} us ({ratio:.0f}x slower)",
        ),
        ("inclusion verification", f"{inc['verify_per_s']:,}/s", ">= 20,000/s", ""),
        ("group commit, 32 threads", f"{gc['ops_per_s']:,}/s (p99 {gc['p99_ms']} ms)", "", ""),
        (
            f"boot on {boot['size']:,}",
            f"{boot['seconds']} s, peak {boot['peak_kib']} KiB, {boot['frontier_hashes']} hashes",
            "<= 2 s, O(log n)",
            "",
        ),
    ]
    lines = ["| what | SOP | target | peer |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="entries in the large log")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    result = run(args.size)
    print(json.dumps(result, indent=2) if args.json else _table(result))


if __name__ == "__main__":
    main()
