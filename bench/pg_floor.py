"""The raw floor of ``bench_postgres.py``: pgbench doing SOP's sequencing pattern, nothing else.

One pgbench transaction is what one SOP log batch does to sequence entries,
without SOP: ``BEGIN``, lock the single head row ``FOR UPDATE`` (and read the
head), insert ``batch`` entry rows at the next indexes (a SHA-256 leaf hash and
a payload of SOP's mean size, made by the server), move the head, ``COMMIT``.
Tables shaped like SOP's ``log_head``/``log_entries`` are made in the run's
schema. Every session sets ``synchronous_commit`` on, as SOP's do. pgbench
reports transactions/s and each statement's mean latency (``-r``); the
per-transaction log (``-l``) gives p50/p99.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psycopg
from pg_replicas import percentile
from psycopg import conninfo, sql

__all__ = ["FLOOR_DDL", "pgbench", "pgbench_available", "script"]

PGBENCH = "pgbench"

FLOOR_DDL = """
CREATE TABLE floor_head (id SMALLINT PRIMARY KEY CHECK (id = 1), size BIGINT NOT NULL);
INSERT INTO floor_head (id, size) VALUES (1, 0);
CREATE TABLE floor_entries (
    idx BIGINT PRIMARY KEY, leaf_hash BYTEA NOT NULL, payload BYTEA NOT NULL
);
"""

_INSERT = (
    "INSERT INTO floor_entries (idx, leaf_hash, payload)"
    " SELECT i, sha256(int8send(i)), convert_to(repeat(md5(i::text), {repeats}), 'UTF8')"
    " FROM generate_series(:head::bigint, :next::bigint - 1) i;"
)
"""The batch's rows at the indexes after the head (pgbench sends a statement on one line)."""
_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)$", re.M)
_STATEMENT = re.compile(r"^\s+([0-9.]+)\s+[0-9]+\s+(\S.*)$", re.M)


def pgbench_available() -> bool:
    """Whether pgbench can be run here."""
    try:
        done = subprocess.run([PGBENCH, "--version"], check=False, capture_output=True)
    except OSError:
        return False
    return done.returncode == 0


def script(batch: int, payload_bytes: int) -> str:
    """One sequencing transaction of ``batch`` entries of about ``payload_bytes`` each."""
    repeats = max(1, round(payload_bytes / 32))
    return f"""\\set n {batch}
BEGIN;
SELECT size AS head FROM floor_head WHERE id = 1 FOR UPDATE \\gset
\\set next :head + :n
{_INSERT.format(repeats=repeats)}
UPDATE floor_head SET size = :next::bigint WHERE id = 1;
END;
"""


def create_tables(dsn: str, schema: str) -> None:
    """Make the floor's tables in ``schema`` (they go when the schema is dropped)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        conn.execute(FLOOR_DDL)


def _env(dsn: str, schema: str) -> tuple[list[str], dict[str, str]]:
    """pgbench's connection options and environment (the password only in the environment)."""
    params = {k: str(v) for k, v in conninfo.conninfo_to_dict(dsn).items() if v is not None}
    args = []
    for key, flag in (("host", "-h"), ("port", "-p"), ("user", "-U")):
        if key in params:
            args += [flag, params[key]]
    env = os.environ.copy()
    if "password" in params:
        env["PGPASSWORD"] = params["password"]
    env["PGOPTIONS"] = f"-c search_path={schema} -c synchronous_commit=on"
    return [*args, params.get("dbname", "postgres")], env


def pgbench(
    dsn: str, schema: str, *, batch: int, payload_bytes: int, clients: int, seconds: float
) -> dict[str, Any]:
    """Run the floor's transaction from ``clients`` sessions for ``seconds``.

    Returns:
        Transactions/s, entries/s, p50/p99 per transaction in ms, each statement's
        mean latency in ms.

    Raises:
        RuntimeError: pgbench failed.
    """
    where, env = _env(dsn, schema)
    with tempfile.TemporaryDirectory(prefix="sop-pgbench-") as tmp:
        path = Path(tmp) / "sequence.sql"
        path.write_text(script(batch, payload_bytes))
        cmd = [PGBENCH, "-n", "-M", "prepared", "-r", "-l", "--log-prefix", f"{tmp}/tx"]
        cmd += ["-f", str(path), "-c", str(clients), "-j", str(min(clients, 2))]
        cmd += ["-T", str(max(1, round(seconds))), *where]
        done = subprocess.run(
            cmd, check=False, capture_output=True, text=True, env=env, timeout=seconds + 120
        )
        tps = _TPS.search(done.stdout)
        if done.returncode != 0 or tps is None:
            raise RuntimeError(f"pgbench failed ({done.returncode}): {done.stderr[-800:]}")
        hist: dict[int, int] = {}
        for log in Path(tmp).glob("tx.*"):
            for line in log.read_text().splitlines():
                us = int(line.split()[2])
                hist[us] = hist.get(us, 0) + 1
    statements = {
        " ".join(text.split())[:48]: float(ms)
        for ms, text in _STATEMENT.findall(done.stdout)
        if not text.startswith("\\")
    }
    rate = float(tps.group(1))
    return {
        "tool": f"pgbench -c{clients}",
        "batch": batch,
        "clients": clients,
        "payload_bytes": payload_bytes,
        "tx_per_s": round(rate, 1),
        "entries_per_s": round(rate * batch, 1),
        "p50_ms": round(percentile(hist, 50) / 1e3, 2),
        "p99_ms": round(percentile(hist, 99) / 1e3, 2),
        "statements_ms": statements,
    }
