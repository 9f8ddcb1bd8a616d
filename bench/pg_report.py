"""The cost split, target verdicts and tables of ``bench_postgres.py`` (issue 15, item 6)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from pg_probe import LOCK_LABEL, OUTSIDE, REBUILD, TIMES

__all__ = ["TARGETS", "render", "split_costs", "targets"]

DECISIONS_PER_S = 2500
P99_MS = 50.0
RECEIPT_P99_S = 1.0
TARGETS = (DECISIONS_PER_S, P99_MS, RECEIPT_P99_S)
"""Two replicas: durable logged decisions/s, p99 ms; receipts on another replica: p99 s."""


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, -(-len(ordered) * p // 100) - 1))]


def _ms(seconds: float) -> float:
    return round(seconds * 1e3, 3)


def split_costs(files: list[Path], window: tuple[float, float]) -> dict[str, Any]:
    """Summarise the probes of one probed run (``pg_probe.py``, one file per replica).

    Args:
        files: the replicas' probe files.
        window: the probed load's start and end (``time.time()``): what ended
            outside it (boot, checks, warm-up) is left out.

    Returns:
        Per committed batch: how many were rebuilt on a moved head, round trips (the
        transaction's, the rebuild's reads, the whole log batch's), entries, where the
        transaction's time goes, how long the head row was held; the statements sent.
    """
    data = [json.loads(f.read_text()) for f in files]
    t0, t1 = window
    attempts = [a for d in data for a in d["attempts"] if t0 <= a["at"] <= t1]
    batches = [b for d in data for b in d["log_batches"] if t0 <= b[3] <= t1]
    committed = [a for a in attempts if a["outcome"] == "committed"]
    if not committed:
        return {"committed": 0, "failed": len(attempts)}
    n = len(committed)
    statements: dict[str, list[float]] = {}
    for b in batches:
        for label, (count, total) in b[4].items():
            row = statements.setdefault(label, [0, 0.0])
            row[0] += count
            row[1] += total

    def mean(key: str) -> float:
        return round(sum(a[key] for a in committed) / n, 2)

    return {
        "committed": n,
        "committed_per_s": round(n / (t1 - t0), 1),
        "failed": len(attempts) - n,
        "failed_batches": sum(1 for b in batches if not b[2]),
        "rebuilt_per_batch": round(sum(1 for a in committed if a["rebuilt"]) / n, 2),
        "entries_per_batch": round(sum(a["entries"] for a in committed) / n, 1),
        "round_trips_per_commit": mean("round_trips"),
        "rebuild_round_trips_per_commit": mean("rebuild_round_trips"),
        "round_trips_per_batch": round(sum(b[1] for b in batches) / max(1, len(batches)), 1),
        "median_ms": {k: _ms(statistics.median(a[k] for a in committed)) for k in TIMES},
        "mean_ms": {k: _ms(statistics.fmean(a[k] for a in committed)) for k in TIMES},
        "attempt_ms": {
            "p50": _ms(statistics.median(a["wall_s"] for a in committed)),
            "p99": _ms(_pct([a["wall_s"] for a in committed], 99)),
        },
        "log_batch_ms": {
            "p50": _ms(statistics.median(b[0] for b in batches)),
            "p99": _ms(_pct([b[0] for b in batches], 99)),
        },
        "statements": {
            label: {"per_batch": round(c / n, 2), "mean_ms": _ms(t / c) if c else None}
            for label, (c, t) in sorted(statements.items(), key=lambda kv: -kv[1][0])
        },
    }


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def targets(result: dict[str, Any]) -> list[dict[str, str]]:
    """The verdicts: decisions/s and p99 with two replicas, receipts p99 on another replica."""
    two = result["postgres"].get("2", {})
    rate, p99 = two.get("req_per_s", 0.0), two.get("p99_ms", float("inf"))
    waits = two.get("receipts", {}).get("waits_s", [])
    missed = two.get("receipts", {}).get("missed", 0)
    r99 = _pct(waits, 99) if waits and not missed else float("inf")
    shown = f"p99 {r99:.3f} s over {len(waits):,}" if waits else "none measured"
    return [
        {
            "what": "durable logged decisions/s, 2 replicas, wrk -c32 in all",
            "target": f">= {DECISIONS_PER_S:,}",
            "measured": f"{rate:,.0f}",
            "verdict": _verdict(rate >= DECISIONS_PER_S),
        },
        {
            "what": "decision p99, 2 replicas (closed loop)",
            "target": f"<= {P99_MS:g} ms",
            "measured": f"{p99} ms",
            "verdict": _verdict(p99 <= P99_MS),
        },
        {
            "what": "receipt served by the other replica, from the decision's answer",
            "target": f"p99 <= {RECEIPT_P99_S:g} s",
            "measured": shown + (f", {missed} never served" if missed else ""),
            "verdict": _verdict(r99 <= RECEIPT_P99_S),
        },
    ]


def _run_row(label: str, x: dict[str, Any]) -> str:
    cpu = x.get("server_cpu_us_per_decision")
    pg_cpu = x.get("postgres_cpu_us_per_decision")
    return (
        f"| {label} | {x['tool']} | {x['req_per_s']:,.0f} | {x['p50_ms']} | {x['p99_ms']} "
        f"| {x.get('unlogged', '-')} "
        f"| {x.get('entries_per_batch', '-')} | {x.get('mean_batch', '-')} "
        f"| {cpu if cpu is not None else '-'} | {pg_cpu if pg_cpu is not None else '-'} |"
    )


def _runs_table(result: dict[str, Any]) -> list[str]:
    lines = [
        "| run | load | decisions/s | p50 ms | p99 ms | unlogged DENYs | entries/log batch "
        "| decisions/queue batch | SOP CPU µs/decision | PostgreSQL CPU µs/decision |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        _run_row("SQLite, 1 `sop serve` (bench_http decide)", result["sqlite"]),
    ]
    for n, x in result["postgres"].items():
        lines.append(_run_row(f"PostgreSQL, {n} `sop serve` replica{'s' if n != '1' else ''}", x))
    for c, x in result.get("wider", {}).items():
        lines.append(_run_row(f"PostgreSQL, 2 replicas, {c} connections", x))
    return lines


def _floor_table(result: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "| raw floor (pgbench, same run) | batch | tx/s | entries/s | p50 ms | p99 ms "
        "| lock ms | insert ms | update ms | COMMIT ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f in result["floor"]:
        st = f["statements_ms"]

        def pick(prefix: str, st: dict[str, float] = st) -> str:
            return next((f"{v:.3f}" for k, v in st.items() if k.startswith(prefix)), "-")

        lines.append(
            f"| lock head, insert {f['batch']}, move head; {f['tool']} | {f['batch']} "
            f"| {f['tx_per_s']:,.0f} | {f['entries_per_s']:,.0f} | {f['p50_ms']} | {f['p99_ms']} "
            f"| {pick('SELECT')} | {pick('INSERT')} | {pick('UPDATE')} | {pick('END')} |"
        )
    return lines


def _cost_table(result: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "| probed run | batches/s | rebuilt per batch | failed | entries/batch "
        "| round trips: transaction + rebuild reads (whole log batch) | BEGIN ms "
        "| head lock wait ms | rebuild ms | sign ms | statements ms | COMMIT ms "
        "| head held ms (p50 / mean) | log batch ms (p50 / p99) |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for n, c in result["costs"].items():
        if not c.get("committed"):
            lines.append(f"| {n} replica(s) | no batch committed |" + " |" * 12)
            continue
        m, med = c["mean_ms"], c["median_ms"]
        lines.append(
            f"| {n} replica{'s' if n != '1' else ''}, {c['tool']} | {c['committed_per_s']:,.0f} "
            f"| {c['rebuilt_per_batch']} | {c['failed_batches']} | {c['entries_per_batch']} "
            f"| {c['round_trips_per_commit']} + {c['rebuild_round_trips_per_commit']} "
            f"({c['round_trips_per_batch']}) | {m['begin_s']} | {m['head_lock_s']} "
            f"| {m['rebuild_s']} | {m['sign_s']} | {m['statements_s']} | {m['commit_s']} "
            f"| {med['held_s']} / {m['held_s']} "
            f"| {c['log_batch_ms']['p50']} / {c['log_batch_ms']['p99']} |"
        )
    return lines


def _statements(result: dict[str, Any]) -> list[str]:
    key = "2" if "2" in result["costs"] else next(iter(result["costs"]), None)
    if key is None or not result["costs"][key].get("committed"):
        return []
    lines = [
        "",
        f"Round trips a committed batch sends, {key} replica(s) (per batch: statement,"
        " where, mean ms each including any wait):",
        "",
    ]
    for label, s in result["costs"][key]["statements"].items():
        where = next(
            (w for p, w in ((OUTSIDE, "outside"), (REBUILD, "rebuild")) if label.startswith(p)),
            "transaction",
        )
        text = label.removeprefix(OUTSIDE).removeprefix(REBUILD)
        text = text if text == LOCK_LABEL else f"`{text}`"
        lines.append(f"- {s['per_batch']} × {text} ({where}): {s['mean_ms']} ms")
    return lines


def render(result: dict[str, Any]) -> str:
    """The human-readable report: runs, floor, cost split, targets, notes."""
    lines = _runs_table(result) + _floor_table(result) + _cost_table(result)
    lines += _statements(result)
    lines += ["", "| target | wanted | measured | verdict |", "|---|---|---|---|"]
    lines += [
        f"| {t['what']} | {t['target']} | {t['measured']} | {t['verdict']} |"
        for t in result["targets"]
    ]
    s = result["setup"]
    notes = []
    for n, x in result["postgres"].items():
        rc = x.get("receipts")
        if rc and rc.get("waits_s"):
            w = rc["waits_s"]
            notes.append(
                f"{n} replicas: {len(w):,} receipts from the other replica, p50 "
                f"{_pct(w, 50) * 1e3:.1f} ms, p99 {_pct(w, 99) * 1e3:.1f} ms, max "
                f"{max(w) * 1e3:.1f} ms, {rc['missed']} not served"
                + (f" (error: {rc['error']})" if rc.get("error") else "")
            )
    idle = result.get("idle_receipt")
    if idle:
        waited, after = idle["waited_s"], idle["after_own_write_s"]
        notes.append(
            f"idle (no load), entry {idle['index']}: the other replica served its receipt "
            + ("after " + f"{waited * 1e3:.1f} ms" if waited is not None else "not at all")
            + f" within {s['idle_give_up_s']} s; after it decided one request of its own: "
            + (f"{after * 1e3:.1f} ms" if after is not None else "still not")
        )
    lines += ["", *notes]
    lines += [
        f"log: {s['log_check']}; mean entry payload {s['payload_bytes']:.0f} bytes",
        f"machine: Python {s['python']}, {s['cpus']} CPUs, load average {s['load_average']}; "
        f"PostgreSQL {s['postgres']}; {s['at']}",
        "checks: "
        + ("every answer as expected" if not result["problems"] else "; ".join(result["problems"])),
    ]
    return "\n".join(lines)
