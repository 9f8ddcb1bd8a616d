"""``sop serve`` with probes on its PostgreSQL log path, for ``bench_postgres.py``'s cost split.

Run as ``python3 bench/pg_probe.py OUT.json serve --data-dir D ...``: it wraps,
for the life of the process, what one log batch does against PostgreSQL, then
runs the CLI with the remaining arguments. At exit (a clean SIGTERM stop) it
writes what it counted to ``OUT.json``:

- every ``TransparencyLog._commit`` (one log batch, from its first attempt to
  its durable end: lost races, re-reading the tail, rebuilding and re-signing
  included): its wall time, the statements it sent, and whether it became
  durable (it fails after ``HEAD_ATTEMPTS`` lost races in a row);
- every ``PostgresLog.commit`` attempt (one transaction on the head row):
  committed or lost (``LogHeadMovedError``), its entries, its wall time, and
  inside it the wait for a pooled connection, ``BEGIN``, each statement (by
  its first words), the wait for the head row's lock and ``COMMIT``.

A round trip is one ``Cursor.execute`` (psycopg sends the statement and reads
its result before returning; a ``fetch`` afterwards reads what is already in
hand), plus ``BEGIN`` and ``COMMIT``. The probes add a few microseconds a
statement; throughput runs are made without them.
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

from sop_verified.errors import LogHeadMovedError
from sop_verified.storage.postgres_log import PostgresLog
from sop_verified.tools.tlog import TransparencyLog

__all__ = ["LOCK_LABEL", "OUTSIDE", "TIMES", "Probe", "install", "main"]

_LOCK_HEAD = "SELECT size FROM log_head WHERE id = 1 FOR UPDATE"
LOCK_LABEL = "lock the head row (SELECT ... FOR UPDATE)"
OUTSIDE = "(between attempts) "
"""Prefixes a statement of a log batch sent outside its transactions (re-reading the tail)."""
TIMES = ("pool_wait_s", "begin_s", "head_lock_s", "statements_s", "commit_s")
"""Where an attempt's wall time goes: pooled connection, BEGIN, head lock (wait + round trip),
the other statements, COMMIT."""


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
        self.log_batches: list[tuple[float, int, bool]] = []  # (seconds, statements, durable)
        self.attempts: list[dict[str, Any]] = []
        self.statements: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])

    def frame(self) -> dict[str, Any] | None:
        """The attempt being timed on this thread, if any."""
        return getattr(self.local, "attempt", None)

    def count(self, label: str, seconds: float) -> None:
        """One round trip of ``label`` inside a log batch."""
        self.local.log_statements = getattr(self.local, "log_statements", 0) + 1
        attempt = self.frame()
        if attempt is not None:
            attempt["round_trips"] += 1
            if label == LOCK_LABEL:
                attempt["head_lock_s"] += seconds
            elif label == "BEGIN":
                attempt["begin_s"] += seconds
            elif label not in ("COMMIT", "ROLLBACK"):
                attempt["statements_s"] += seconds
        with self.lock:
            row = self.statements[label if attempt is not None else OUTSIDE + label]
            row[0] += 1
            row[1] += seconds

    def dump(self, out: Path) -> None:
        """Write what was counted to ``out`` (JSON)."""
        with self.lock:
            data = {
                "log_batches": self.log_batches,
                "attempts": self.attempts,
                "statements": {k: [int(v[0]), v[1]] for k, v in self.statements.items()},
            }
        out.write_text(json.dumps(data))


def _in_batch(probe: Probe) -> bool:
    return getattr(probe.local, "in_log_batch", False)


def install(probe: Probe) -> None:
    """Wrap the log path's methods (for the life of the process)."""
    execute = psycopg.Cursor.execute
    enter, exit_ = psycopg.Transaction.__enter__, psycopg.Transaction.__exit__
    getconn = ConnectionPool.getconn
    log_commit = TransparencyLog._commit
    pg_commit = PostgresLog.commit

    def timed(fn: Callable[..., Any], label: Callable[..., str]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not _in_batch(probe):
                return fn(*args, **kwargs)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                probe.count(label(*args), time.perf_counter() - t0)

        return wrapper

    def on_exit(self: Any, *args: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return exit_(self, *args)
        finally:
            if _in_batch(probe):
                dt = time.perf_counter() - t0
                probe.count("COMMIT" if args[0] is None else "ROLLBACK", dt)
                attempt = probe.frame()
                if attempt is not None and args[0] is None:
                    attempt["commit_s"] += dt

    def on_getconn(self: Any, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return getconn(self, *args, **kwargs)
        finally:
            attempt = probe.frame() if _in_batch(probe) else None
            if attempt is not None:
                attempt["pool_wait_s"] += time.perf_counter() - t0

    def on_log_commit(self: Any, batch: Any) -> Any:
        probe.local.in_log_batch, probe.local.log_statements = True, 0
        t0, ok = time.perf_counter(), False
        try:
            result = log_commit(self, batch)
            ok = True
            return result
        finally:
            probe.local.in_log_batch = False
            row = (time.perf_counter() - t0, probe.local.log_statements, ok)
            with probe.lock:
                probe.log_batches.append(row)

    def on_pg_commit(self: Any, batch: Any, unit: Any) -> Any:
        attempt = dict.fromkeys(TIMES, 0.0)
        attempt.update(entries=len(batch.entries), round_trips=0, outcome="committed")
        probe.local.attempt = attempt
        t0 = time.perf_counter()
        try:
            return pg_commit(self, batch, unit)
        except LogHeadMovedError:
            attempt["outcome"] = "lost"
            raise
        except Exception:
            attempt["outcome"] = "failed"
            raise
        finally:
            probe.local.attempt = None
            attempt["wall_s"] = time.perf_counter() - t0
            with probe.lock:
                probe.attempts.append(attempt)

    psycopg.Cursor.execute = timed(execute, lambda _cur, query, *_: _label(query))  # type: ignore[method-assign]
    psycopg.Transaction.__enter__ = timed(enter, lambda *_: "BEGIN")  # type: ignore[method-assign]
    psycopg.Transaction.__exit__ = on_exit  # type: ignore[method-assign]
    ConnectionPool.getconn = on_getconn  # type: ignore[method-assign]
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
