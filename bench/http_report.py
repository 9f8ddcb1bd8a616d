"""The checks, target verdicts and tables of ``bench_http.py`` (DESIGN.md section 9, issue 14)."""

from __future__ import annotations

from typing import Any

__all__ = ["ROWS", "render", "targets"]

DECIDE_PER_S = 3000
DECIDE_VS_ECHO = 0.4
OPEN_P99_MS = 10.0
PERSIST_PER_S = 2000
TILE_PER_S = 10000

ROWS = [
    ("echo", "bridge: POST /bench/echo (the stack's ceiling)", "closed"),
    ("decide", "bridge: POST /v1/decide (ALLOW + DENY, logged)", "closed"),
    ("persist", "bridge: 4 KiB persist", "closed"),
    ("tile", "read: {label}", "closed"),
    ("open_echo", "bridge: POST /bench/echo", "open"),
    ("open_decide", "bridge: POST /v1/decide (ALLOW + DENY, logged)", "open"),
    ("open_tile", "read: {label}", "open"),
    ("tls", "bridge over mutual TLS: POST /v1/decide", "open"),
]
"""Every row of the report: (run key, what, loop)."""


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _problems(runs: dict[str, Any], exit_status: int) -> list[str]:
    out = [] if exit_status == 0 else [f"the server exited with `{exit_status}` on SIGTERM"]
    for key, x in runs.items():
        if "unavailable" in x:
            continue
        if x.get("server_exit_status", 0) != 0:
            out.append(f"{key}: its server exited with `{x['server_exit_status']}` on SIGTERM")
        if x.get("errors"):
            out.append(f"{key}: socket errors `{x['errors']}`")
        if x.get("non2xx"):
            out.append(f"{key}: `{x['non2xx']}` answers were not 2xx")
        if key == "persist" and "allow" in x:
            if x["deny"] or not x["allow"]:  # every persist of the run must be written
                out.append(f"{key}: denials (ALLOW {x['allow']}, DENY {x['deny']})")
            if x["log_entries_added"] < 2 * x["allow"]:  # a decision and its effect each
                out.append(
                    f"{key}: {x['allow']} writes but the log grew by "
                    f"{x['log_entries_added']} entries"
                )
        elif "allow" in x:
            if not (x["allow"] and x["deny"]):
                out.append(f"{key}: not both effects (ALLOW {x['allow']}, DENY {x['deny']})")
            if x["log_entries_added"] < x["allow"] + x["deny"]:
                out.append(
                    f"{key}: {x['allow'] + x['deny']} decisions but the log grew by "
                    f"{x['log_entries_added']} entries"
                )
    return out


def targets(runs: dict[str, Any], exit_status: int) -> tuple[list[dict[str, Any]], list[str]]:
    """The target verdicts and the failed checks of one run.

    Args:
        runs: the runs by key (see :data:`ROWS`).
        exit_status: the server's exit status after SIGTERM.

    Returns:
        One verdict per target (what, target, measured, PASS/MISS or not available) and the
        failed checks (an empty list when every answer was as expected).
    """
    echo, decide, open_decide = runs["echo"], runs["decide"], runs["open_decide"]
    ratio = decide["req_per_s"] / echo["req_per_s"] if echo["req_per_s"] else 0.0
    kept_up = open_decide["achieved_per_s"] >= 0.99 * open_decide["offered_per_s"]
    tile = runs["tile"]
    stand_in = tile["label"].startswith("stand-in")
    out = [
        {
            "what": "/v1/decide rate vs echo rate (same server, same run)",
            "target": f">= {DECIDE_VS_ECHO}",
            "measured": f"{ratio:.3f}",
            "verdict": _verdict(ratio >= DECIDE_VS_ECHO),
        },
        {
            "what": "/v1/decide, closed loop, 32 connections",
            "target": f">= {DECIDE_PER_S:,} req/s",
            "measured": f"{decide['req_per_s']:,.0f} req/s",
            "verdict": _verdict(decide["req_per_s"] >= DECIDE_PER_S),
        },
        {
            "what": f"/v1/decide, open loop, {open_decide['offered_per_s']:,.0f} req/s offered",
            "target": f"p99 <= {OPEN_P99_MS:g} ms, kept up",
            "measured": f"p99 {open_decide['p99_ms']} ms, "
            f"{open_decide['achieved_per_s']:,.0f} req/s done",
            "verdict": _verdict(open_decide["p99_ms"] <= OPEN_P99_MS and kept_up),
        },
        _persist_verdict(runs["persist"]),
        {
            "what": tile["label"],
            "target": f">= {TILE_PER_S:,} req/s",
            "measured": f"{tile['req_per_s']:,.0f} req/s",
            "verdict": _verdict(tile["req_per_s"] >= TILE_PER_S)
            + (" (stand-in, not a tile)" if stand_in else ""),
        },
    ]
    return out, _problems(runs, exit_status)


def _persist_verdict(persist: dict[str, Any]) -> dict[str, str]:
    row = {"what": "4 KiB persist, closed loop, 32 connections, each written and fsynced"}
    row["target"] = f">= {PERSIST_PER_S:,} req/s"
    if "unavailable" in persist:
        return {**row, "measured": persist["unavailable"], "verdict": "not available"}
    rate = persist["req_per_s"]
    return {**row, "measured": f"{rate:,.0f} req/s", "verdict": _verdict(rate >= PERSIST_PER_S)}


def _pct_core(cpu: float | None, wall: float | None) -> str:
    return f"{cpu / wall:.0%}" if cpu is not None and wall else "-"


def render(r: dict[str, Any]) -> str:
    """The human-readable report: one table of runs, the targets, the notes."""
    runs = r["runs"]
    lines = [
        "| target | loop | load | req/s | p50 ms | p99 ms | errors / non-2xx "
        "| load generator CPU (of a core) | server CPU (of a core) | server CPU us/req |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, what, loop in ROWS:
        x = runs.get(key, {"unavailable": "not run"})
        title = what.format(label=x.get("label", ""))
        if "unavailable" in x:
            lines.append(f"| {title} | {loop} | - | {x['unavailable']} | | | | | | |")
            continue
        wall = x.get("wall_s")
        lines.append(
            f"| {title} | {loop} | {x['tool']} | {x['req_per_s']:,.0f} | {x['p50_ms']} "
            f"| {x['p99_ms']} | {x.get('errors') or 0} / {x.get('non2xx') or 0} "
            f"| {_pct_core(x['generator_cpu_s'], wall)} | {_pct_core(x['server_cpu_s'], wall)} "
            f"| {x['server_cpu_us_per_req'] or '-'} |"
        )
    lines += ["", "| target | wanted | measured | verdict |", "|---|---|---|---|"]
    lines += [
        f"| {t['what']} | {t['target']} | {t['measured']} | {t['verdict']} |" for t in r["targets"]
    ]
    decided = [
        f"{k}: ALLOW {runs[k]['allow']:,}, DENY {runs[k]['deny']:,}, "
        f"log +{runs[k]['log_entries_added']:,} entries, {runs[k]['mean_batch']} a log batch"
        for k in ("decide", "open_decide", "tls")
        if "allow" in runs.get(k, {})
    ]
    s = r["setup"]
    lines += [
        "",
        "decisions: " + "; ".join(decided),
        f"machine: Python {s['python']}, {s['cpus']} CPUs, load average {s['load_average']}; "
        f"uvicorn {s['uvicorn']}, starlette {s['starlette']}; server exit status "
        f"{r['server_exit_status']}; {s['at']}",
        "checks: "
        + ("every answer as expected" if not r["problems"] else "; ".join(r["problems"])),
    ]
    return "\n".join(lines)
