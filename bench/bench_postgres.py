"""SOP replicas on one PostgreSQL log beside SQLite and a raw floor (issue 15, item 6): a bench.

One run, on the machine's PostgreSQL (``--dsn``, default
``SOP_BENCH_POSTGRES_DSN`` or 127.0.0.1:5432, database ``test``) in a fresh
schema dropped afterwards:

1. **SQLite**: ``bench_http.py``'s decide run, one ``sop serve`` on its own
   SQLite data directory, ``wrk -c32``;
2. **PostgreSQL, 1, 2 and 3 replicas**: the first data directory made with
   ``SOP.init(dsn=...)`` (the demo's sound policies, a DRAC capability), the
   others with ``sop init --replica-of``; each run starts that many ``sop
   serve`` processes and drives them with one wrk each, the 32 connections
   split between them, the same eight ALLOW/DENY requests as ``bench_http.py``
   (every request its own ``request_id``). Every answer is a decision durably
   committed to the shared log (``synchronous_commit`` on) with its receipt.
   p50/p99 are over every request of the run (the wrk histograms merged).
   With two replicas or more, a probe thread decides one request at a time on
   one replica and times until another serves its receipt
   (``/v1/receipts/<index>``, ``pg_receipts.py``); after the two-replica load,
   the same once with no load; then two replicas again with more connections
   (``--wider``, default 128: bigger batches, the log's capacity);
3. **the cost split**: the same runs again, shorter, each replica under
   ``pg_probe.py`` (round trips, rebuilds on a moved head, BEGIN, head-lock wait,
   statements and COMMIT of every log batch);
4. **the raw floor**: pgbench doing only the sequencing pattern (lock the
   head row, insert the batch, move the head) at the batch size the
   two-replica run reached, two clients, and one entry per transaction from 32
   clients (``pg_floor.py``).

It exits 2 when a check fails: an answer not 2xx, a socket error, a run
without both effects, a log that grew by less than one entry a decision, a
server that did not exit 0 on SIGTERM. Run:
``python3 bench/bench_postgres.py [--seconds 10] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench_http
from http_load import wrk
from http_server import ServeProcess, get, post, prepare, scrape
from pg_floor import create_tables, pgbench
from pg_receipts import ReceiptProbe, idle_receipt
from pg_replicas import LogStats, fresh_schema, split_wrk
from pg_replicas import prepare as prepare_replicas
from pg_report import render, split_costs, targets

__all__ = ["DEFAULT_DSN", "main", "run"]

DEFAULT_DSN = os.environ.get(
    "SOP_BENCH_POSTGRES_DSN", "host=127.0.0.1 port=5432 dbname=test user=postgres"
)
CONNECTIONS = 32
_UNLOGGED = re.compile(
    r'^sop_decisions_total\{[^}]*code="log_append_failed"[^}]*\} ([0-9.e+]+)$', re.M
)
PROBE = Path(__file__).resolve().parent / "pg_probe.py"


def _sqlite_run(root: Path, seconds: float) -> dict[str, Any]:
    """``bench_http.py``'s closed-loop decide run, on SQLite."""
    data_dir, token = prepare(root)
    cases = bench_http.bodies(token)
    posts = [b for _, b in cases]
    server = ServeProcess(data_dir)
    try:
        wrong = bench_http._check_cases(server.bridge, cases)
        if wrong:
            raise RuntimeError("; ".join(wrong))
        decide = server.bridge + "/v1/decide"
        wrk(decide, seconds=1, bodies=posts)  # warm-up, not reported
        _settle(lambda: scrape(server.read)["log_size"])
        result = bench_http._decide_run(server, lambda: wrk(decide, seconds=seconds, bodies=posts))
    finally:
        result_status = server.stop()
    result["server_exit_statuses"] = [result_status]
    result["server_cpu_us_per_decision"] = result["server_cpu_us_per_req"]
    return result


def _check(bridge: str, cases: list[tuple[str, list[str]]], tag: str) -> list[str]:
    wrong = []
    for k, (effect, (prefix, suffix)) in enumerate(cases):
        status, answer = post(bridge + "/v1/decide", f"{prefix}{tag}-{k}{suffix}".encode())
        got = json.loads(answer).get("effect") if status == 200 else f"HTTP {status}"
        if got != effect:
            wrong.append(f"case {k}: expected `{effect}`, got `{got}` ({answer[:300]!r})")
    return wrong


def _settle(size: Callable[[], float], timeout: float = 5.0) -> None:
    """Wait until the log's size stops moving: the requests of a load that ended are logged."""
    deadline, last = time.monotonic() + timeout, size()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        head = size()
        if head == last:
            return
        last = head


def _unlogged(read: str) -> float:
    """DENYs whose entry could not be logged (``log_append_failed``), from ``/metrics``."""
    _, body = get(read + "/metrics")
    return sum(float(v) for v in _UNLOGGED.findall(body.decode()))


def _sample(servers: list[ServeProcess], stats: LogStats) -> dict[str, Any]:
    _settle(stats.head)
    metrics = [scrape(s.read) for s in servers]
    return {
        "unlogged": sum(_unlogged(s.read) for s in servers),
        "allow": sum(m["ALLOW"] for m in metrics),
        "deny": sum(m["DENY"] for m in metrics),
        "queue_batches": sum(m.get("batch_count", 0.0) for m in metrics),
        "queued": sum(m.get("batch_sum", 0.0) for m in metrics),
        "cpu_s": sum(s.cpu_s() for s in servers),
        "head": stats.head(),
        "pg_cpu": stats.backend_cpu_s(),
    }


def _summary(before: dict[str, Any], after: dict[str, Any], stats: LogStats) -> dict[str, Any]:
    decisions = int(after["allow"] - before["allow"] + after["deny"] - before["deny"])
    unlogged = int(after["unlogged"] - before["unlogged"])
    growth = after["head"] - before["head"]
    batches = stats.batches(before["head"], after["head"])
    queue_batches = after["queue_batches"] - before["queue_batches"]
    pg_cpu = sum(
        v - before["pg_cpu"][p] for p, v in after["pg_cpu"].items() if p in before["pg_cpu"]
    )
    per = (lambda s: round(s / decisions * 1e6, 1)) if decisions else (lambda _s: None)
    return {
        "allow": int(after["allow"] - before["allow"]),
        "deny": int(after["deny"] - before["deny"]),
        "unlogged": unlogged,
        "log_entries_added": growth,
        "log_batches": batches,
        "entries_per_batch": round(growth / batches, 1) if batches else None,
        "mean_batch": round((after["queued"] - before["queued"]) / queue_batches, 1)
        if queue_batches
        else None,
        "server_cpu_us_per_decision": per(after["cpu_s"] - before["cpu_s"]),
        "postgres_cpu_us_per_decision": per(pg_cpu),
        "log_range": [before["head"], after["head"]],
    }


def _pg_run(
    dirs: list[Path],
    cases: list[tuple[str, list[str]]],
    stats: LogStats,
    seconds: float,
    *,
    tag: str,
    probes: list[Path] | None = None,
    receipts: bool = False,
    idle_give_up: float | None = None,
    connections: int = CONNECTIONS,
) -> dict[str, Any]:
    """One closed-loop run over ``len(dirs)`` replicas (probed when ``probes`` name files)."""
    servers: list[ServeProcess] = []
    result: dict[str, Any] = {}
    try:
        for i, d in enumerate(dirs):
            launcher = None if probes is None else [sys.executable, str(PROBE), str(probes[i])]
            servers.append(ServeProcess(d, echo=False, launcher=launcher))
        wrong = [w for i, s in enumerate(servers) for w in _check(s.bridge, cases, f"{tag}-c{i}")]
        if wrong:
            raise RuntimeError("; ".join(wrong))
        posts = [b for _, b in cases]
        urls = [s.bridge + "/v1/decide" for s in servers]
        split_wrk(urls, posts, seconds=1, connections=connections, tag=f"{tag}-warm")
        before = _sample(servers, stats)
        probe = None
        if receipts:
            reads = [s.read for s in servers]
            until = time.monotonic() + seconds - min(1.0, seconds / 4)
            probe = ReceiptProbe([s.bridge for s in servers], reads, posts, tag=tag, until=until)
            probe.start()
        started = time.time()
        result = split_wrk(urls, posts, seconds=seconds, connections=connections, tag=tag)
        result["window"] = [started, time.time()]
        if probe is not None:
            result["receipts"] = probe.stop()
        result.update(_summary(before, _sample(servers, stats), stats))
        if idle_give_up is not None and len(servers) >= 2:
            time.sleep(0.5)  # the last batches settle
            pair = [(s.bridge, s.read) for s in servers[:2]]
            first, second = cases[0][1], cases[2][1]
            bodies = (
                f"{first[0]}{tag}-idle-0{first[1]}".encode(),
                f"{second[0]}{tag}-idle-1{second[1]}".encode(),
            )
            result["idle_receipt"] = idle_receipt(pair[0], pair[1], bodies, idle_give_up)
    finally:
        result["server_exit_statuses"] = [s.stop() for s in servers]
    return result


def run(
    seconds: float,
    *,
    probe_seconds: float,
    floor_seconds: float,
    dsn: str = DEFAULT_DSN,
    replicas: tuple[int, ...] = (1, 2, 3),
    wider: tuple[int, ...] = (128,),
    idle_give_up: float = 2.0,
) -> dict[str, Any]:
    """One whole run: SQLite, PostgreSQL with each replica count, probed runs, the floor.

    Args:
        seconds: each measured closed-loop run.
        probe_seconds: each probed run (0: none).
        floor_seconds: each pgbench run.
        dsn: the PostgreSQL database (a fresh schema is made and dropped).
        replicas: the replica counts to run.
        wider: more connections in all, for a two-replica run each (bigger batches).
        idle_give_up: how long the idle receipt check waits.

    Returns:
        The runs, the floor, the cost split, the targets, the checks, the setup.

    Raises:
        RuntimeError: a server did not start, or a request got the wrong effect.
    """
    result: dict[str, Any] = {"postgres": {}, "wider": {}, "costs": {}, "floor": []}
    with tempfile.TemporaryDirectory(prefix="sop-bench-pg-") as tmp:
        result["sqlite"] = _sqlite_run(Path(tmp) / "sqlite", seconds)
        with fresh_schema(dsn) as schema:
            root = Path(tmp) / "pg"
            root.mkdir()
            dirs, token = prepare_replicas(root, dsn, schema, max(replicas))
            stats = LogStats(dsn, schema)
            cases = bench_http.bodies(token)
            for n in replicas:
                x = _pg_run(
                    dirs[:n],
                    cases,
                    stats,
                    seconds,
                    tag=f"n{n}",
                    receipts=n >= 2,
                    idle_give_up=idle_give_up if n == 2 else None,
                )
                result["idle_receipt"] = x.pop("idle_receipt", result.get("idle_receipt"))
                result["postgres"][str(n)] = x
            for c in wider if len(dirs) >= 2 else ():
                x = _pg_run(dirs[:2], cases, stats, seconds, tag=f"w{c}", connections=c)
                result["wider"][str(c)] = x
            for n in replicas if probe_seconds > 0 else ():
                files = [Path(tmp) / f"probe-{n}-{i}.json" for i in range(n)]
                x = _pg_run(dirs[:n], cases, stats, probe_seconds, tag=f"p{n}", probes=files)
                costs = split_costs(files, x["window"])
                costs.update(tool=f"{x['req_per_s']:,.0f} decisions/s probed")
                costs["server_exit_statuses"] = x["server_exit_statuses"]
                result["costs"][str(n)] = costs
            ref = result["postgres"][str(2 if 2 in replicas else replicas[-1])]
            batch = max(1, round(ref["entries_per_batch"] or 1))
            payload = stats.payload_bytes(*ref["log_range"])
            create_tables(dsn, schema)
            for b, clients in ((batch, 2), (1, CONNECTIONS)):
                result["floor"].append(
                    pgbench(
                        dsn,
                        schema,
                        batch=b,
                        payload_bytes=round(payload),
                        clients=clients,
                        seconds=floor_seconds,
                    )
                )
            settings = stats.settings()
    result["problems"] = _problems(result)
    result["targets"] = targets(result)
    result["setup"] = _setup(seconds, probe_seconds, floor_seconds, settings, payload, idle_give_up)
    result["setup"]["log_check"] = _log_check(result)
    return result


def _problems(result: dict[str, Any]) -> list[str]:
    out = []
    runs = {
        "sqlite": result["sqlite"],
        **{f"postgres {k}": v for k, v in result["postgres"].items()},
        **{f"postgres 2, -c{k}": v for k, v in result["wider"].items()},
    }
    for key, x in runs.items():
        if any(result_status != 0 for result_status in x["server_exit_statuses"]):
            out.append(f"{key}: a server exited with `{x['server_exit_statuses']}` on SIGTERM")
        if x.get("errors") or x.get("non2xx"):
            out.append(f"{key}: `{x.get('errors')}` socket errors, `{x.get('non2xx')}` not 2xx")
        if not (x["allow"] and x["deny"]):
            out.append(f"{key}: not both effects (ALLOW {x['allow']}, DENY {x['deny']})")
        logged = x["allow"] + x["deny"] - x.get("unlogged", 0)  # reported on their own
        if x["log_entries_added"] < logged:
            out.append(
                f"{key}: {logged} decisions logged, the log grew by {x['log_entries_added']}"
            )
        receipts = x.get("receipts")
        if receipts and receipts.get("error"):
            out.append(f"{key}: the receipt probe failed: {receipts['error']}")
    for n, c in result["costs"].items():
        if any(s != 0 for s in c["server_exit_statuses"]):
            out.append(f"probed {n}: a server exited with `{c['server_exit_statuses']}`")
        if c.get("failed"):
            out.append(f"probed {n}: {c['failed']} log transactions failed")
    return out


def _log_check(result: dict[str, Any]) -> str:
    parts = []
    for n, x in result["postgres"].items():
        parts.append(
            f"{n} replica(s): {x['allow'] + x['deny']:,} decisions ({x['unlogged']:,} unlogged"
            f" DENYs), log +{x['log_entries_added']:,} entries in {x['log_batches']:,} batches"
        )
    return "; ".join(parts)


def _setup(
    seconds: float,
    probe_seconds: float,
    floor_seconds: float,
    settings: dict[str, str],
    payload: float,
    idle_give_up: float,
) -> dict[str, Any]:
    return {
        "seconds": seconds,
        "probe_seconds": probe_seconds,
        "floor_seconds": floor_seconds,
        "idle_give_up_s": idle_give_up,
        "payload_bytes": payload,
        "postgres": ", ".join(f"{k} {v}" for k, v in sorted(settings.items())),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def main() -> None:
    """Parse the options, run, print; exit 2 if a check failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="each measured run")
    parser.add_argument("--probe-seconds", type=float, default=5.0, help="each probed run")
    parser.add_argument("--floor-seconds", type=float, default=5.0, help="each pgbench run")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument(
        "--wider", type=int, nargs="*", default=[128], help="two replicas with more connections"
    )
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="the PostgreSQL database")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    result = run(
        args.seconds,
        probe_seconds=args.probe_seconds,
        floor_seconds=args.floor_seconds,
        dsn=args.dsn,
        replicas=tuple(sorted(set(args.replicas))),
        wider=tuple(args.wider),
    )
    print(json.dumps(result, indent=2) if args.json else render(result))
    if result["problems"]:
        sys.exit(2)


if __name__ == "__main__":
    main()
