"""``sop serve`` with probes on its PostgreSQL log path, for ``bench_postgres.py``'s cost split.

Run as ``python3 bench/pg_probe.py OUT.json serve --data-dir D ...``: it wraps,
for the life of the process, what one log batch does against PostgreSQL, then
runs the CLI with the remaining arguments. At exit (a clean SIGTERM stop) it
writes what it counted to ``OUT.json``:

- every ``TransparencyLog._commit`` (one log batch, from its first attempt to
  its durable end): its wall time, the statements it sent, and whether it
  became durable;
- every ``PostgresLog.commit`` (one transaction on the head row, ADR 0017):
  committed or failed, its entries, whether the batch had to be rebuilt on a
  head another replica moved (``Batch.on_head``), and where its time went: the
  wait for a pooled connection, ``BEGIN``, the head row's lock (wait and round
  trip), then, holding the lock, the rebuild (re-reading the tail and the other
  replica's entries, building the tree again), the checkpoint's signature, the
  other statements and ``COMMIT``; ``held_s`` is from the lock's grant to the
  end of ``COMMIT``.

A round trip is one ``Cursor.execute`` (psycopg sends the statement and reads
its result before returning; a ``fetch`` afterwards reads what is already in
hand), plus ``BEGIN`` and ``COMMIT``. The rebuild's reads go through other
pooled connections while the transaction holds the lock; they are counted
apart. The probes add a few microseconds a statement; throughput runs are made
without them.
"""

from __future__ import annotations

import atexit
import json
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from sop_verified.storage.postgres_log import PostgresLog
from sop_verified.tools.tlog import TransparencyLog
from sop_verified.tools.tlog_store import Batch

__all__ = ["LOCK_LABEL", "OUTSIDE", "REBUILD", "TIMES", "Probe", "install", "main"]

_LOCK_HEAD = "SELECT size FROM log_head WHERE id = 1 FOR UPDATE"
LOCK_LABEL = "lock the head row (SELECT ... FOR UPDATE)"
OUTSIDE = "(outside the transaction) "
"""Prefixes a statement of a log batch sent outside its transaction."""
REBUILD = "(rebuild, under the lock) "
"""Prefixes a read of the rebuild (another pooled connection, while the lock is held)."""
TIMES = (
    "pool_wait_s",
    "begin_s",
    "head_lock_s",
    "rebuild_s",
    "sign_s",
    "statements_s",
    "commit_s",
    "held_s",
)
"""Where an attempt's wall time goes (see the module docstring)."""


def _label(query: object) -> str:
    text = query if isinstance(query, str) else str(getattr(query, "_obj", query))
    words = " ".join(text.split())
    if words.startswith(_LOCK_HEAD):
        return LOCK_LABEL
    return words[:56]


class Probe:
    """What the wrapped methods saw, per thread while inside a log batch."""

    def __init__(self) -> None:
        """Empty counters."""
        self.lock = threading.Lock()
        self.local = threading.local()
        self.log_batches: list[tuple[float, int, bool, float, dict[str, list[float]]]] = []
        """(seconds, statements, durable, wall-clock end, {label: [count, seconds]}) a batch."""
        self.attempts: list[dict[str, Any]] = []

    def frame(self) -> dict[str, Any] | None:
        """The transaction being timed on this thread, if any."""
        return getattr(self.local, "attempt", None)

    def count(self, label: str, seconds: float) -> None:
        """One round trip of ``label`` inside a log batch."""
        self.local.log_statements = getattr(self.local, "log_statements", 0) + 1
        attempt = self.frame()
        prefix = OUTSIDE if attempt is None else ""
        if attempt is not None and attempt["_rebuilding"]:
            attempt["rebuild_round_trips"] += 1
            prefix = REBUILD
        elif attempt is not None:
            attempt["round_trips"] += 1
            if label == LOCK_LABEL:
                attempt["head_lock_s"] += seconds
                attempt["_granted"] = time.perf_counter()
            elif label == "BEGIN":
                attempt["begin_s"] += seconds
            elif label not in ("COMMIT", "ROLLBACK"):
                attempt["statements_s"] += seconds
        row = self.local.labels[prefix + label]
        row[0] += 1
        row[1] += seconds

    def dump(self, out: Path) -> None:
        """Write what was counted to ``out`` (JSON)."""
        with self.lock:
            data = {"log_batches": self.log_batches, "attempts": self.attempts}
        out.write_text(json.dumps(data))


def _in_batch(probe: Probe) -> bool:
    return getattr(probe.local, "in_log_batch", False)


def _timed(probe: Probe, fn: Callable[..., Any], label: Callable[..., str]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not _in_batch(probe):
            return fn(*args, **kwargs)
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            probe.count(label(*args), time.perf_counter() - t0)

    return wrapper


def _within(probe: Probe, fn: Callable[..., Any], key: str) -> Callable[..., Any]:
    """Wrap ``fn`` so its time inside a transaction adds to the attempt's ``key``.

    ``rebuild_s`` also marks the reads made meanwhile as the rebuild's, and records
    whether the batch was rebuilt; a pooled connection taken for a rebuild read is
    part of the rebuild, not of ``pool_wait_s``.
    """
    rebuild = key == "rebuild_s"

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        attempt = probe.frame() if _in_batch(probe) else None
        if attempt is None or (attempt["_rebuilding"] and not rebuild):
            return fn(*args, **kwargs)
        t0 = time.perf_counter()
        attempt["_rebuilding"] = rebuild
        try:
            result = fn(*args, **kwargs)
            if rebuild:
                attempt["rebuilt"] = result is not args[0]
            return result
        finally:
            attempt["_rebuilding"] = False
            attempt[key] += time.perf_counter() - t0

    return wrapper


def install(probe: Probe) -> None:
    """Wrap the log path's methods (for the life of the process)."""
    exit_ = psycopg.Transaction.__exit__
    log_commit = TransparencyLog._commit
    pg_commit = PostgresLog.commit

    def on_exit(self: Any, *args: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return exit_(self, *args)
        finally:
            if _in_batch(probe):
                end = time.perf_counter()
                probe.count("COMMIT" if args[0] is None else "ROLLBACK", end - t0)
                attempt = probe.frame()
                if attempt is not None and args[0] is None:
                    attempt["commit_s"] += end - t0
                    attempt["held_s"] = end - attempt.get("_granted", end)

    def on_log_commit(self: Any, batch: Any) -> Any:
        probe.local.in_log_batch, probe.local.log_statements = True, 0
        probe.local.labels = defaultdict(lambda: [0, 0.0])
        t0, ok = time.perf_counter(), False
        try:
            result = log_commit(self, batch)
            ok = True
            return result
        finally:
            probe.local.in_log_batch = False
            labels = dict(probe.local.labels)
            row = (time.perf_counter() - t0, probe.local.log_statements, ok, time.time(), labels)
            with probe.lock:
                probe.log_batches.append(row)

    def on_pg_commit(self: Any, batch: Any, unit: Any) -> Any:
        attempt: dict[str, Any] = dict.fromkeys(TIMES, 0.0)
        attempt.update(entries=0, round_trips=0, rebuild_round_trips=0, rebuilt=False)
        attempt.update(outcome="committed", _rebuilding=False)
        probe.local.attempt = attempt
        t0 = time.perf_counter()
        try:
            return pg_commit(self, batch, unit)
        except Exception:
            attempt["outcome"] = "failed"
            raise
        finally:
            probe.local.attempt = None
            attempt["wall_s"] = time.perf_counter() - t0
            attempt["at"] = time.time()
            attempt.pop("_granted", None)
            attempt.pop("_rebuilding", None)
            with probe.lock:
                probe.attempts.append(attempt)

    def on_signed(self: Batch) -> Any:
        attempt = probe.frame()
        if attempt is not None:
            attempt["entries"] = len(self.entries)  # the batch written (rebuilt or not)
        return signed(self)

    execute = psycopg.Cursor.execute
    psycopg.Cursor.execute = _timed(probe, execute, lambda _cur, query, *_: _label(query))  # type: ignore[method-assign]
    enter = psycopg.Transaction.__enter__
    psycopg.Transaction.__enter__ = _timed(probe, enter, lambda *_: "BEGIN")  # type: ignore[method-assign]
    psycopg.Transaction.__exit__ = on_exit  # type: ignore[method-assign]
    ConnectionPool.getconn = _within(probe, ConnectionPool.getconn, "pool_wait_s")  # type: ignore[method-assign]
    Batch.on_head = _within(probe, Batch.on_head, "rebuild_s")  # type: ignore[method-assign]
    signed = _within(probe, Batch.signed_checkpoint, "sign_s")
    Batch.signed_checkpoint = on_signed  # type: ignore[method-assign]
    TransparencyLog._commit = on_log_commit  # type: ignore[method-assign]
    PostgresLog.commit = on_pg_commit  # type: ignore[method-assign]


def main() -> None:
    """``pg_probe.py OUT.json CLI-ARGS...``: install the probes, run the CLI, dump at exit."""
    out = Path(sys.argv[1])
    probe = Probe()
    install(probe)
    atexit.register(probe.dump, out)
    sys.argv = ["sop", *sys.argv[2:]]
    from sop_verified.cli import main as cli_main  # noqa: PLC0415 - after the probes

    cli_main()


if __name__ == "__main__":
    main()
