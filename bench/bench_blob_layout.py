"""What a small blob's table layout costs SQLite per write (ADR 0009; not a test).

Replays the rows a batch of linked writes commits (two log entries of about
650 bytes, the effect row, the name's version, a 4 KiB blob) in one durable
transaction per batch (WAL, ``synchronous=FULL``), on a database that already
holds a few thousand objects, for each layout:

* ``digest key``: the layout before ADR 0009, blobs in ``persist_blobs`` with
  the primary key ``(scope, stored)``, a B-tree keyed by the blob's SHA-256;
* ``effect index``: the shipped layout, blobs in ``persist_inline`` under the
  effect's index, stored through the view ``persist_inline_in`` (whose
  trigger finds an earlier holder of the same blob through the effects'
  digest index, which both layouts keep).

It reports wall and CPU time per write and the bytes the process wrote to disk
per write (``/proc/self/io``, Linux; WAL frames and checkpoint copies). The
schemas are SOP's own DDL, so the figures follow the code.

Run: ``python3 bench/bench_blob_layout.py`` (about 20 s), ``--json`` for machine output.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sop_verified.storage.sqlite_blobs import INLINE_SCHEMA
from sop_verified.storage.sqlite_db import insert_rows
from sop_verified.storage.sqlite_log import LOG_SCHEMA
from sop_verified.storage.sqlite_persist import PERSIST_SCHEMA

__all__ = ["LAYOUTS", "run_layout"]

LEGACY_BLOBS = """
CREATE TABLE IF NOT EXISTS persist_blobs (
    scope TEXT NOT NULL,
    stored TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (scope, stored)
);
"""
"""The blob table before ADR 0009 (for comparison only)."""

LAYOUTS = ("digest key", "effect index")
SCOPE = "drac-artifacts"
PAYLOAD = b"x" * 650  # about the size of a decision or effect entry


def _open(path: Path, layout: str) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(LOG_SCHEMA + PERSIST_SCHEMA + INLINE_SCHEMA + LEGACY_BLOBS)
    return db


def _batch(db: sqlite3.Connection, layout: str, start: int, writes: int, salt: int) -> int:
    """Commit one batch of ``writes`` linked writes from log index ``start``; return the next."""
    entries, effects, versions, blobs = [], [], [], []
    at = start
    for k in range(writes):
        data = f"{salt}:{k}:".encode().ljust(4096, b"\0")
        hexd = hashlib.sha256(data).hexdigest()
        stored = f"sha256/{hexd[:2]}/{hexd}"
        name = f"bench/c{k:02d}/obj{salt % 8}.bin"
        entries += [(at, hashlib.sha256(PAYLOAD + bytes([0])).digest(), PAYLOAD)]
        entries += [(at + 1, hashlib.sha256(PAYLOAD + bytes([1])).digest(), PAYLOAD)]
        effects.append(
            (at + 1, at, "written", SCOPE, name, stored, "sha256:" + hexd, 4096, 1, salt)
        )
        versions.append((SCOPE, name, salt + 1))
        blobs.append((at + 1, SCOPE, stored, data))
        at += 2
    db.execute("BEGIN IMMEDIATE")  # one multi-row statement per table, as the store does
    insert_rows(db, "INSERT INTO log_entries (idx, leaf_hash, payload)", entries, 3)
    insert_rows(
        db,
        "INSERT INTO persist_effects (effect_index, decision_index, outcome, scope, name,"
        " stored, digest, size, time, version)",
        effects,
        10,
    )
    insert_rows(
        db,
        "INSERT INTO persist_versions (scope, name, latest)",
        versions,
        3,
        " ON CONFLICT (scope, name) DO UPDATE SET latest = excluded.latest",
    )
    if layout == "digest key":
        head = "INSERT OR REPLACE INTO persist_blobs (scope, stored, data)"
        insert_rows(db, head, [b[1:] for b in blobs], 3)
    else:
        insert_rows(
            db, "INSERT INTO persist_inline_in (effect_index, scope, stored, data)", blobs, 4
        )
    db.execute("COMMIT")
    return at


def _written_bytes() -> int | None:
    try:
        text = Path("/proc/self/io").read_text()
    except OSError:
        return None
    return int(text.split("write_bytes:")[1].split()[0])


def run_layout(layout: str, *, objects: int, batches: int, writes: int) -> dict[str, Any]:
    """Fill a fresh database with ``objects`` objects, then time ``batches`` batches.

    Raises:
        RuntimeError: the layout did not keep exactly one row per blob written.

    Returns:
        ``layout``, ``wall_us_per_write``, ``cpu_us_per_write`` (this thread),
        ``kb_written_per_write`` (None where ``/proc/self/io`` is missing) and
        ``median_batch_ms``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        db = _open(Path(tmp) / "layout.db", layout)
        at = 0
        for salt in range(objects // writes):
            at = _batch(db, layout, at, writes, salt)
        walls, cpus = [], []
        before = _written_bytes()
        for salt in range(objects // writes, objects // writes + batches):
            t, c = time.perf_counter(), time.thread_time()
            at = _batch(db, layout, at, writes, salt)
            walls.append(time.perf_counter() - t)
            cpus.append(time.thread_time() - c)
        after = _written_bytes()
        table = "persist_blobs" if layout == "digest key" else "persist_inline"
        (kept,) = db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
        db.close()
    stored = (objects // writes + batches) * writes  # every blob differs: one row each
    if kept != stored:
        raise RuntimeError(f"layout `{layout}` kept {kept} blobs of {stored} written")
    n = batches * writes
    kb = None if before is None or after is None else round((after - before) / n / 1024, 1)
    return {
        "layout": layout,
        "wall_us_per_write": round(sum(walls) / n * 1e6, 1),
        "cpu_us_per_write": round(sum(cpus) / n * 1e6, 1),
        "kb_written_per_write": kb,
        "median_batch_ms": round(statistics.median(walls) * 1e3, 2),
    }


def main() -> None:
    """Run every layout and print a table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=3500, help="objects stored first")
    parser.add_argument("--batches", type=int, default=400, help="timed batches per layout")
    parser.add_argument("--writes", type=int, default=20, help="writes per batch")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    if min(args.objects, args.batches, args.writes) < 1:
        parser.error("--objects, --batches and --writes must be at least 1")
    rows = [
        run_layout(layout, objects=args.objects, batches=args.batches, writes=args.writes)
        for layout in LAYOUTS
    ]
    if args.json:
        print(json.dumps({"writes_per_batch": args.writes, "layouts": rows}, indent=2))
        return
    base = rows[0]["wall_us_per_write"]
    print(f"{args.writes} writes a batch, {args.objects} objects stored first, WAL + FULL")
    print(
        "| layout | wall us/write | CPU us/write | KB written/write | median batch ms"
        " | vs digest key |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        kb = "-" if r["kb_written_per_write"] is None else r["kb_written_per_write"]
        ratio = r["wall_us_per_write"] / base if base else float("nan")
        print(
            f"| {r['layout']} | {r['wall_us_per_write']} | {r['cpu_us_per_write']} | {kb} |"
            f" {r['median_batch_ms']} | {ratio:.2f}x |"
        )
    print(f"(machine: {os.cpu_count()} CPUs; one process, one thread, one connection)")


if __name__ == "__main__":
    main()
