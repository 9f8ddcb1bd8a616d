"""The tables ``bench_e2e.py`` prints: the runs against the targets, the stages, the profile."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["TARGET_OPS_PER_S", "TARGET_P99_MS", "render"]

TARGET_OPS_PER_S = 5000
TARGET_P99_MS = 5.0


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _open_line(line: Callable[[str, dict[str, Any], str, str], None], who: str, x: Any) -> None:
    offered = x["offered_ops_per_s"]
    kept_up = x["ops_per_s"] >= 0.99 * offered and x["p99_ms"] <= TARGET_P99_MS
    target = f"offered {offered:,.0f}/s: kept up, p99 <= {TARGET_P99_MS:g} ms"
    line(f"{who}, open loop, {offered:,.0f} ops/s offered", x, target, _verdict(kept_up))


def render(r: dict[str, Any]) -> str:
    """The human-readable tables."""
    runs, setup = r["runs"], r["setup"]
    thr, seq, sub, fresh = runs["thr"], runs["seq"], runs["sub"], runs["fresh"]
    n = setup["threads"]
    lines = [
        "| run | ops | ops/s | p50 ms | p99 ms | CPU us/op (user + sys) | entries/batch "
        "| target | met |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]

    def line(title: str, x: dict[str, Any], target: str, met: str) -> None:
        lines.append(
            f"| {title} | {x['ops']:,} | {x['ops_per_s']:,} | {x['p50_ms']} | {x['p99_ms']} "
            f"| {x['cpu_us_per_op']:,} ({x['cpu_user_us_per_op']:,} + "
            f"{x['cpu_system_us_per_op']:,}) | {x['entries_per_batch'] or '-'} | {target} | {met} |"
        )

    # the target's rows: each kind of submitter, closed loop, then open loop at each rate
    for who, closed, call, open_prefix in (
        (f"{n} submitters", thr, "sop.persist", "open"),
        (f"{n} coroutine submitters", runs["aio"], "sop.persist_async", "aopen"),
    ):
        ok_tp = closed["ops_per_s"] >= TARGET_OPS_PER_S
        ok_p99 = closed["p99_ms"] <= TARGET_P99_MS
        line(
            f"{who}, {call} 4 KiB",
            closed,
            f">= {TARGET_OPS_PER_S:,} ops/s; p99 <= {TARGET_P99_MS:g} ms",
            f"{_verdict(ok_tp)}; {_verdict(ok_p99)}",
        )
        for label, x in runs.items():
            if label.startswith(open_prefix):
                _open_line(line, who, x)
    line("1 client, sop.persist 4 KiB", seq, "(reference)", "")
    line(f"{n} submitters, sop.submit (decision only)", sub, "(comparison)", "")
    line("1 client, sop.persist 64 KiB + 1 (two steps: a file)", runs["twostep"], "(ADR 0005)", "")
    line("1 client, sop.persist, a new path each op", fresh, "(fresh obligation)", "")
    line(f"floor: filesystem alone, {n} writers", runs["fs"], "(4 KiB, 2 fsyncs each)", "")
    line(f"floor: signed log alone, {n} appenders", runs["log"], "(1 entry each)", "")
    lines += ["", _stages_md(r["stages"], n), "", _notes(r)]
    if "profile" in r:
        lines += ["", _profile_md(r["profile"])]
    return "\n".join(lines)


def _stages_md(stages: list[dict[str, Any]], n: int) -> str:
    out = [
        f"| stage | how | 1 client calls/op | 1 client median us | {n} threads calls/op "
        f"| {n} threads median us | {n} threads p99 us | {n} threads us per op |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in stages:
        cells = [
            s["calls_per_op"],
            s["seq_median_us"],
            s.get("thr_calls_per_op"),
            s["thr_median_us"],
            s["thr_p99_us"],
            s.get("thr_us_per_op"),
        ]
        text = " | ".join("-" if c is None else f"{c:,}" for c in cells)
        out.append(f"| {s['stage']} | {s['how']} | {text} |")
    return "\n".join(out)


def _notes(r: dict[str, Any]) -> str:
    setup = r["setup"]
    return (
        f"machine: Python {setup['python']}, {setup['cpus']} CPUs, load average "
        f"{setup['load_average']}, switch interval {setup['switch_interval_ms']:g} ms; "
        f"contracts {setup['contracts']}; sqlite {setup['sqlite_pragmas']} (synchronous 2 = "
        f"FULL); warm-up "
        f"{setup['warm_up']['ops']} ops in {setup['warm_up']['seconds']} s (every path's scope "
        f"obligation proved once); refused operations: {r['refused']}"
    )


def _profile_md(p: dict[str, Any]) -> str:
    if "error" in p:
        return f"profile: {p['error']}"
    out = []
    for mode, title in (("cpu_gil_holder", "CPU (GIL holder)"), ("wall_all_threads", "wall")):
        x = p[mode]
        head = f"py-spy {title}: {x['samples']:,} samples over {x['seconds']} s"
        if mode == "cpu_gil_holder" and x["seconds"]:
            held = x["sampled_seconds"]
            head += (
                f"; the submitters held the GIL {held} s ({held / x['seconds']:.0%} of the run,"
                f" {held / x['ops'] * 1e6:,.0f} us per op)"
            )
        out.append(head)
        out += [f"  {share:5.1f}%  {label}" for label, share in x["categories"] if share >= 0.5]
        out += ["  top frames:"] + [f"  {share:5.1f}%  {f}" for f, share in x["top_frames"][:8]]
    return "\n".join(out)
