"""SOP replicas on one PostgreSQL schema for ``bench_postgres.py``: setup, load, what the log did.

:func:`fresh_schema` makes a schema for one run and drops it afterwards.
:func:`prepare` makes the first replica's data directory there the way an
operator does (``SOP.init`` with the DSN, the demo's sound policy set
activated, one DRAC capability) and the others with ``sop init --replica-of``.
:func:`split_wrk` drives several ``sop serve`` replicas at once with one
``wrk`` process each, the connections split between them, and merges their
latency histograms (wrk's ``done`` callback prints every recorded latency and
its count), so p50 and p99 are over every request of the run.
:class:`LogStats` reads the schema's log head, its entry sizes and the
backend processes' CPU time.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from http_load import WRK, lua_script
from psycopg import sql

from sop_verified.nexus.demo import SOUND_POLICIES
from sop_verified.nexus.sop import SOP, wall_clock

__all__ = ["LogStats", "fresh_schema", "percentile", "prepare", "split_wrk"]

_TICK = os.sysconf("SC_CLK_TCK")

_HIST_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"non2xx":%d,"errors":%d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout))
  local parts = {}
  for i = 1, #latency do
    local v, c = latency(i)
    parts[#parts + 1] = string.format("%d:%d", v, c)
  end
  io.write("WRKHIST " .. table.concat(parts, ",") .. "\\n")
end
"""
"""Replaces ``http_load``'s ``done``: the summary and every (latency us, count) wrk recorded."""


@contextlib.contextmanager
def fresh_schema(dsn: str) -> Iterator[str]:
    """A schema name no one uses; the schema (if made) is dropped on the way out."""
    schema = f"sop_pgbench_{secrets.token_hex(4)}"
    try:
        yield schema
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def prepare(root: Path, dsn: str, schema: str, replicas: int) -> tuple[list[Path], str]:
    """Data directories of ``replicas`` replicas of one log in ``schema``, and DRAC's token.

    Args:
        root: an empty directory.
        dsn: the PostgreSQL database.
        schema: the schema to create (``SOP.init`` migrates it).
        replicas: how many data directories.

    Returns:
        The data directories (the first made with ``SOP.init``) and the capability token.

    Raises:
        RuntimeError: SOP did not boot READY, or ``sop init --replica-of`` failed.
    """
    first = root / "replica-1"
    SOP.init(first, dsn=dsn, schema=schema)
    sop = SOP.boot(first)
    try:
        if str(sop.health) != "READY":
            raise RuntimeError(f"the first replica booted `{sop.health}`, not READY")
        (root / "policies").mkdir()
        (root / "policies" / "policies.toml").write_text(SOUND_POLICIES)
        sop.activate_policy(root / "policies")
        actions = ["artifact.persist", "artifact.read"]
        _, token = sop.admit("drac", actions, ["artifacts/drac/**"], expires=wall_clock() + 7200)
    finally:
        sop.close()
    dirs = [first]
    for k in range(2, replicas + 1):
        d = root / f"replica-{k}"
        cmd = [sys.executable, "-m", "sop_verified.cli", "init", "--data-dir", str(d)]
        done = subprocess.run(
            [*cmd, "--replica-of", str(first), "--json"],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"sop init --replica-of failed: {done.stdout[-500:]} {done.stderr}")
        dirs.append(d)
    return dirs, token


def percentile(hist: dict[int, int], p: float) -> float:
    """The ``p``-th percentile (0-100) of a histogram ``{value: count}`` (nearest rank)."""
    total = sum(hist.values())
    if not total:
        return float("nan")
    rank = max(1, -(-total * p // 100))
    seen = 0
    for value in sorted(hist):
        seen += hist[value]
        if seen >= rank:
            return float(value)
    return float(max(hist))


def _split(total: int, n: int) -> list[int]:
    return [total // n + (1 if i < total % n else 0) for i in range(n)]


def split_wrk(
    urls: list[str], bodies: list[list[str]], *, seconds: float, connections: int, tag: str
) -> dict[str, Any]:
    """Closed loop on every URL at once: ``connections`` split between them, one wrk each.

    Args:
        urls: one ``/v1/decide`` URL per replica.
        bodies: ``[prefix, suffix]`` templates (``bench_http.bodies``).
        seconds: the run's length.
        connections: the connections in all.
        tag: put in every ``request_id`` with the replica's number (unique in the shared log).

    Returns:
        Requests, req/s (summed over the replicas), p50/p99/max in ms over every request,
        socket errors, non-2xx answers, per-replica requests.

    Raises:
        RuntimeError: a wrk failed or printed no summary.
    """
    with tempfile.TemporaryDirectory(prefix="sop-pgwrk-") as tmp:
        procs = []
        for i, (url, conns) in enumerate(zip(urls, _split(connections, len(urls)), strict=True)):
            path = "/" + url.split("/", 3)[3]
            mine = [[p + f"{tag}-r{i}-", s] for p, s in bodies]
            lua = Path(tmp) / f"replica{i}.lua"
            lua.write_text(lua_script(path, mine) + _HIST_DONE)
            cmd = [WRK, f"-c{conns}", "-t1", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
            procs.append(
                subprocess.Popen(
                    [*cmd, "-s", str(lua), url],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
        outputs = [p.communicate(timeout=seconds + 60)[0] for p in procs]
    hist: dict[int, int] = {}
    summary = {"requests": 0, "req_per_s": 0.0, "non2xx": 0, "errors": 0, "per_replica": []}
    for proc, out in zip(procs, outputs, strict=True):
        lines = {x.split(" ", 1)[0]: x.split(" ", 1)[1] for x in out.splitlines() if " " in x}
        if proc.returncode != 0 or "WRKJSON" not in lines:
            raise RuntimeError(f"wrk failed ({proc.returncode}): {out[-800:]}")
        s = json.loads(lines["WRKJSON"])
        summary["requests"] += s["requests"]
        summary["req_per_s"] += s["requests"] / (s["duration_us"] / 1e6)
        summary["non2xx"] += s["non2xx"]
        summary["errors"] += s["errors"]
        summary["per_replica"].append(s["requests"])
        for pair in filter(None, lines.get("WRKHIST", "").split(",")):
            value, count = pair.split(":")
            hist[int(value)] = hist.get(int(value), 0) + int(count)
    summary["req_per_s"] = round(summary["req_per_s"], 1)
    for name, p in (("p50_ms", 50), ("p99_ms", 99), ("max_ms", 100)):
        summary[name] = round(percentile(hist, p) / 1e3, 2)
    summary["tool"] = f"wrk -c{connections} in all, split over {len(urls)}"
    return summary


class LogStats:
    """The schema's log, read from PostgreSQL: head, entry sizes, its backends' CPU."""

    def __init__(self, dsn: str, schema: str) -> None:
        """Read the log in ``schema`` of ``dsn``."""
        self._dsn, self.schema = dsn, schema

    def _query(self, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with psycopg.connect(self._dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
            return conn.execute(statement, params).fetchall()

    def head(self) -> int:
        """The log's size."""
        return int(self._query("SELECT size FROM log_head WHERE id = 1")[0][0])

    def batches(self, start: int, end: int) -> int:
        """Batches committed while the log grew from ``start`` to ``end`` (a checkpoint each)."""
        rows = self._query(
            "SELECT count(*) FROM log_checkpoints WHERE size > %s AND size <= %s", (start, end)
        )
        return int(rows[0][0])

    def payload_bytes(self, start: int, end: int) -> float:
        """The mean payload of entries ``[start, end)``, in bytes."""
        rows = self._query(
            "SELECT avg(octet_length(payload)) FROM log_entries WHERE idx >= %s AND idx < %s",
            (start, end),
        )
        return float(rows[0][0] or 0.0)

    def backend_cpu_s(self) -> dict[int, float]:
        """CPU seconds of every PostgreSQL backend serving this schema's SOP sessions."""
        rows = self._query(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
            (f"sop:{self.schema}",),
        )
        out = {}
        for (pid,) in rows:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                out[int(pid)] = (int(fields[11]) + int(fields[12])) / _TICK
        return out

    def settings(self) -> dict[str, str]:
        """The server's durability settings and version."""
        names = ("server_version", "fsync", "synchronous_commit", "wal_sync_method")
        rows = self._query(
            "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(names),)
        )
        return {str(k): str(v) for k, v in rows}
