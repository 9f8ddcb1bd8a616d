"""End-to-end benchmark of gated, durable operations (issue 5, deliverable 10): not a test.

One operation is ``sop.persist(request, data)`` with 4 KiB of data on a booted
SOP over SQLite (WAL, ``synchronous=FULL``): bridge validation
(``parse_request``), the scope rules of the write, capability, policy, the
derived scope-containment obligation (a cached verdict), then one durable
group commit holding the decision entry, the ``persist.effect`` entry and the
4 KiB (a small content-addressed write is a linked effect, ADR 0007), with one
signed checkpoint per batch. Every operation must come back ALLOW with its
effect ``written``; a denial makes the run exit 2.

Paths: DRAC persists into the content-addressed scope ``artifacts/drac/**``.
A request names the artifact (``artifacts/drac/bench/c07/obj3.bin``) and binds
the bytes by ``content_digest``; the blob is stored under its SHA-256, so the
contents vary from one operation to the next while the names repeat (each
client cycles over 8 names, like a compiler re-emitting the same outputs).
The scope obligation depends on the path only, so after the warm-up every
operation meets a cached verdict. A request that named the blob by digest
(``artifacts/drac/sha256/<hex>``) would carry a new path, hence a fresh
obligation, every time: that case has a row of its own.

Measured in one run: the per-stage breakdown of one operation (probes on the
real path, sequential and under 32 submitters, see ``e2e_probes.py``), one
sequential client, 32 concurrent submitter threads, plain ``sop.submit``
(decision only) with 32 threads, a sequential two-step write (64 KiB + 1: a
file, fsynced, renamed), and two floors without SOP around them: the durable
4 KiB file writes alone, and the signed log's group commit alone.
``--profile`` adds two py-spy samplings of the 32-thread run (CPU: who holds
the GIL; wall: where the threads wait). ``SOP_BENCH_CONTRACTS=off`` runs it
with SOP's contracts off (``contract_switch.py``).

Run: ``python3 bench/bench_e2e.py [--ops N] [--threads 32] [--json] [--profile]``.
``--nats [--rounds R] [--nats-events log|raw]`` measures the NATS sink's cost instead
(``e2e_nats.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import contract_switch  # first: honours SOP_BENCH_CONTRACTS=off before SOP's modules load
import orjson
from e2e_probes import Probes, pyspy_available, pyspy_profile
from e2e_report import TARGET_OPS_PER_S, render
from e2e_scenario import (
    CLIENT_LOOP,
    PAYLOAD_BYTES,
    RunResult,
    Scenario,
    fs_floor,
    log_floor,
    run_clients,
    run_coroutines,
    sha256_hex,
)

from sop_verified.core import kernel
from sop_verified.core.obligations import Verdict
from sop_verified.core.persistence import PersistenceController, writes
from sop_verified.core.persistence.pipeline import LinkedWrites
from sop_verified.core.policy import PolicySet
from sop_verified.core.proofgate.derive import scope_containment
from sop_verified.core.request import parse_request
from sop_verified.nexus.sop import SOP
from sop_verified.storage.sqlite_log import SQLiteLog
from sop_verified.tools import tlog
from sop_verified.tools.canonical import canonical_json
from sop_verified.tools.tlog import TransparencyLog

__all__ = ["isolated_stages", "main", "probe_targets", "probed_run", "run"]


# ---- the per-stage breakdown -----------------------------------------------------------------
def probe_targets(sop: SOP) -> list[tuple[Any, str, Any]]:
    """The methods timed on the real path: (class or module, attribute, stage)."""
    return [
        (LinkedWrites, "persist", WHOLE),
        (
            writes.Writer,
            "linked_plan",
            "scope rules of the write (owned scope, size, digest, name)",
        ),
        (kernel.OpsKernel, "_decide_many", DECIDE),
        (type(sop.capabilities), "check_many", CAPS),
        (PolicySet, "evaluate_many", POLICY),
        (type(sop.gate), "check_many", GATE),
        (PersistenceController, "execute_linked_batch", BATCH),
        (TransparencyLog, "append_parts", LINKED),
        (TransparencyLog, "_prepare", "per batch: checkpoint consistency check"),
        (tlog, "sign_checkpoint", "per batch: checkpoint signature (Ed25519, in the transaction)"),
        (SQLiteLog, "write_batch", "per batch: SQLite transaction (rows, index, COMMIT)"),
    ]


OFFERED_RATES = (1000, 2000, TARGET_OPS_PER_S)
"""Open-loop runs: the submitters together are offered these many operations a second."""

TWO_STEP_BYTES = writes.INLINE_MAX_BYTES + 1
"""Just too large to be kept in the database: the two-step path (a file, fsynced, renamed)."""

WHOLE = "whole: LinkedWrites.persist (plan, queue, batch, answer)"
DECIDE = "per batch: decide every request (all stages)"
CAPS = "per batch: capability checks"
POLICY = "per batch: policy evaluations"
GATE = "per batch: proof obligations (cached verdicts)"
BATCH = "per batch: decide each write, then one durable append (controller)"
LINKED = "per batch: ALLOWs + effects + blobs, one durable commit (log wait)"


def _samples_ns(fn: Callable[[], object], n: int) -> list[int]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        out.append(time.perf_counter_ns() - t0)
    return out


def isolated_stages(s: Scenario, entry: dict[str, Any], n: int) -> dict[str, list[int]]:
    """Stages the probes cannot see from outside, timed alone on the same inputs.

    Args:
        s: the warmed-up scenario.
        entry: a real decision entry (decoded), for the canonical JSON timing.
        n: repetitions of each timing.

    Returns:
        Samples in ns per stage name.

    Raises:
        RuntimeError: the warm-up left no PROVED verdict for the scenario's paths.
    """
    sop = s.sop
    raw = s.request("iso", 0, 0)
    data = s.payload("iso", 0, 0)
    raw.update(content_digest="sha256:" + sha256_hex(data))
    raw["context"]["size_bytes"] = len(data)
    request = parse_request(raw)
    approved = sop.config.scopes.approved if sop.config else ()
    ob = scope_containment(request.resource, approved)
    fresh = [
        scope_containment(f"artifacts/drac/bench/fresh-iso/{k}/obj.bin", approved)
        for k in range(max(10, n // 100))
    ]
    cached = sop.recorded_verdict(ob)
    if cached is None or cached.verdict is not Verdict.PROVED:
        raise RuntimeError(f"the warm-up left no PROVED verdict for `{request.resource}`")
    it = iter(fresh)
    return {
        "request validation (parse_request)": _samples_ns(lambda: parse_request(raw), n),
        "proof obligation: derive (scope_containment)": _samples_ns(
            lambda: scope_containment(request.resource, approved), n
        ),
        "canonical JSON of the decision entry (RFC 8785)": _samples_ns(
            lambda: canonical_json(entry), n
        ),
        "proof obligation: fresh path (not cached)": _samples_ns(
            lambda: sop.recorded_verdict(next(it)), len(fresh)
        ),
    }


def probed_run(
    s: Scenario, label: str, threads: int, per_thread: int
) -> tuple[RunResult, dict[str, list[int]]]:
    """A run with the stage probes on; returns it and the samples per stage."""
    probes = Probes()
    with probes.active(probe_targets(s.sop)):
        run = run_clients(
            label, threads, per_thread, lambda c, i: s.persist(label, c, i), effect=True
        )
    return run, dict(probes.samples)


# ---- the whole run -----------------------------------------------------------------------------
def run(ops: int, threads: int, *, profile: bool) -> dict[str, Any]:
    """Set up, warm up, measure everything; return the results as data."""
    per_thread = max(1, ops // threads)
    with tempfile.TemporaryDirectory(prefix="sop-bench-e2e-") as tmp:
        root = Path(tmp)
        s = Scenario(root, clients=threads)
        try:
            t0 = time.perf_counter()
            s.warm()
            warm_s = time.perf_counter() - t0
            entry = _decision_payload(s)
            out = _measure(s, entry, threads, ops, warm_s, profile=profile)
        finally:
            s.close()
        (root / "floor-log").mkdir()
        floors = [
            fs_floor(root / "floor-fs", threads, per_thread),
            log_floor(root / "floor-log", threads, per_thread, entry),
        ]
        out["runs"].update({r.label: r.summary() for r in floors})
    return out


def _measure(
    s: Scenario, entry: bytes, threads: int, ops: int, warm_s: float, *, profile: bool
) -> dict[str, Any]:
    per_thread = max(1, ops // threads)
    out: dict[str, Any] = {"setup": _setup_facts(s, threads, per_thread, warm_s)}
    iso = isolated_stages(s, orjson.loads(entry), min(2000, 20 * ops))
    runs = [
        run_clients("seq", 1, ops, lambda c, i: s.persist("seq", c, i), effect=True),
        run_clients("thr", threads, per_thread, lambda c, i: s.persist("thr", c, i), effect=True),
        run_clients("sub", threads, per_thread, lambda c, i: s.submit("sub", c, i), effect=False),
        run_clients(
            "twostep",
            1,
            min(200, ops),
            lambda c, i: s.persist("twostep", c, i, size=TWO_STEP_BYTES),
            effect=True,
        ),
        run_clients(
            "fresh",
            1,
            min(50, ops),
            lambda c, i: s.persist("fresh", c, i, f"artifacts/drac/bench/fresh/{i}/obj.bin"),
            effect=True,
        ),
    ]
    runs.append(
        run_coroutines("aio", threads, per_thread, partial(s.persist_async, "aio"), effect=True)
    )
    for rate in OFFERED_RATES:  # the same schedule for threads, then coroutines
        tag = f"open{rate}"
        runs.append(
            run_clients(tag, threads, per_thread, partial(s.persist, tag), effect=True, rate=rate)
        )
    for rate in OFFERED_RATES:
        tag = f"aopen{rate}"
        op = partial(s.persist_async, tag)
        runs.append(run_coroutines(tag, threads, per_thread, op, effect=True, rate=rate))
    seq_probe, seq_stages = probed_run(s, "pseq", 1, min(ops, 1000))
    thr_probe, thr_stages = probed_run(s, "pthr", threads, per_thread)
    out["runs"] = {r.label: r.summary() for r in runs}
    out["stages"] = _stage_table(iso, seq_probe, seq_stages, thr_probe, thr_stages)
    profiled: list[RunResult] = []
    if profile:
        out["profile"] = _profile(s, threads, per_thread, profiled)
    out["refused"] = sum(len(r.problems) for r in [*runs, seq_probe, thr_probe, *profiled])
    return out


def _decision_payload(s: Scenario) -> bytes:
    """The newest decision entry in the log (a representative payload)."""
    size = s.sop.log.size if s.sop.log else 0
    store = s.sop.store
    rows = store.log.log_entries(max(0, size - 8), size) if store else []
    for _, _, payload in reversed(rows):
        if b'"type":"decision"' in payload:
            return payload
    raise RuntimeError("no decision entry among the newest log entries")


def _setup_facts(s: Scenario, threads: int, per_thread: int, warm_s: float) -> dict[str, Any]:
    store = s.sop.store
    db = getattr(store, "_db", None)  # read-only introspection of the backend's own connection
    pragmas = {}
    if db is not None:
        for name in ("journal_mode", "synchronous"):
            pragmas[name] = db.query(f"PRAGMA {name}")[0][0]
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "switch_interval_ms": sys.getswitchinterval() * 1e3,
        "contracts": (
            ("all" if contract_switch.HELPERS else "boundary on, helpers off (shipped)")
            if contract_switch.CONTRACTS_ON
            else "off"
        ),
        "sqlite_pragmas": pragmas,  # synchronous 2 = FULL
        "threads": threads,
        "ops_per_thread": per_thread,
        "payload_bytes": PAYLOAD_BYTES,
        "names_per_client": s.names,
        "warm_up": {"ops": s.clients * s.names, "seconds": round(warm_s, 2)},
    }


def _stage_table(
    iso: dict[str, list[int]],
    seq: RunResult,
    seq_stages: dict[str, list[int]],
    thr: RunResult,
    thr_stages: dict[str, list[int]],
) -> list[dict[str, Any]]:
    def row(name: str, s_ns: list[int] | None, t_ns: list[int] | None, how: str) -> dict[str, Any]:
        per_op = len(s_ns) / len(seq.latencies) if s_ns and how != "isolated" else None
        thr_ops = len(thr.latencies)
        return {
            "stage": name,
            "how": how,
            "calls_per_op": None if per_op is None else round(per_op, 2),
            "seq_median_us": _us(statistics.median(s_ns)) if s_ns else None,
            "thr_calls_per_op": round(len(t_ns) / thr_ops, 3) if t_ns and thr_ops else None,
            "thr_median_us": _us(statistics.median(t_ns)) if t_ns else None,
            "thr_p99_us": _us(_pct(t_ns, 0.99)) if t_ns else None,
            "thr_us_per_op": _us(sum(t_ns) / thr_ops) if t_ns and thr_ops else None,
        }

    order = [
        ("request validation (parse_request)", "isolated"),
        ("scope rules of the write (owned scope, size, digest, name)", "probe"),
        ("proof obligation: derive (scope_containment)", "isolated"),
        ("canonical JSON of the decision entry (RFC 8785)", "isolated"),
        (CAPS, "probe"),
        (POLICY, "probe"),
        (GATE, "probe"),
        (DECIDE, "probe"),
        (BATCH, "probe"),
        (LINKED, "probe"),
        ("per batch: checkpoint (consistency check, Ed25519)", "probe"),
        ("per batch: SQLite transaction (rows, index, COMMIT)", "probe"),
        (WHOLE, "probe"),
    ]
    rows = []
    for name, how in order:
        if how == "isolated":
            rows.append(row(name, iso.get(name), None, "isolated"))
        else:
            rows.append(row(name, seq_stages.get(name), thr_stages.get(name), "probe"))
    total_s = [int(x * 1e9) for x in seq.latencies]
    total_t = [int(x * 1e9) for x in thr.latencies]
    rows.append(row("total: sop.persist", total_s, total_t, "around the call"))
    fresh = iso.get("proof obligation: fresh path (not cached)")
    rows.append(row("proof obligation: fresh path (not cached)", fresh, None, "isolated"))
    return rows


def _us(ns: float) -> float:
    return round(ns / 1e3, 1)


def _pct(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _profile(s: Scenario, threads: int, per_thread: int, runs: list[RunResult]) -> dict[str, Any]:
    if not pyspy_available():
        return {"error": "py-spy is not installed (pip install py-spy)"}
    out: dict[str, Any] = {}
    for mode, gil in (("cpu_gil_holder", True), ("wall_all_threads", False)):
        tag = f"prof{int(gil)}"

        def workload(tag: str = tag) -> None:
            runs.append(
                run_clients(
                    tag, threads, per_thread, lambda c, i: s.persist(tag, c, i), effect=True
                )
            )

        out[mode] = pyspy_profile(workload, thread_marker=CLIENT_LOOP, gil=gil)
        out[mode]["ops"] = threads * per_thread
    return out


def main() -> None:
    """Parse the options, run, print; exit 2 if any operation was refused."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ops", type=int, default=3200, help="operations per measured run")
    parser.add_argument("--threads", type=int, default=32, help="concurrent submitters")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--profile", action="store_true", help="add py-spy samplings")
    parser.add_argument(
        "--nats", action="store_true", help="only the NATS sink's cost: off and on, alternating"
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds of off and on (--nats)")
    parser.add_argument(
        "--nats-events",
        choices=("log", "raw"),
        default="log",
        help="--nats: SOP's projection of the log, or the tests' minimal events (the sink alone)",
    )
    args = parser.parse_args()
    if args.nats:
        from e2e_nats import render_nats, run_nats  # noqa: PLC0415 - only this mode needs NATS

        nats = run_nats(args.ops, args.threads, args.rounds, args.nats_events)
        print(json.dumps(nats, indent=2) if args.json else render_nats(nats))
        sys.exit(2 if nats["refused"] else 0)
    result = run(args.ops, args.threads, profile=args.profile)
    print(json.dumps(result, indent=2) if args.json else render(result))
    if result["refused"]:
        sys.exit(2)


if __name__ == "__main__":
    main()
