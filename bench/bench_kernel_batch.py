"""The kernel's cost per log batch and per decision, in-process, by batch size (not a test).

``sop serve`` decides what its queue holds in one durable log batch. A batch
costs a fixed part (the transaction's commit and fsync, the checkpoint's
consistency check and signature, the rollback anchor's fsynced rename, the
sealed state's MAC, the boundary contracts) and a part per decision (the
stages, the entry's canonical JSON, its leaf hash and rows). This times
``SOP.submit_batch`` on the bench's ``/v1/decide`` mix (ALLOW and DENY, every
decision logged) at batch sizes 1, 4, 13 (the server's average under
``bench_http.py``'s 32 connections) and 64, and fits ``cpu = fixed + n * each``
through the smallest and largest sizes: what ADR 0014 cites when it says where
``/v1/decide``'s time goes.

Run: ``python3 bench/bench_kernel_batch.py [--decisions N] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_http import bodies
from e2e_scenario import Scenario

from sop_verified.core.request import Request, parse_request

SIZES = (1, 4, 13, 64)


def _requests(token: str, count: int) -> list[Request]:
    cases = [pair for _, pair in bodies(token)]
    out = []
    for n in range(count):
        prefix, suffix = cases[n % len(cases)]
        out.append(parse_request(json.loads(f"{prefix}k{n}{suffix}")))
    return out


def run(decisions: int) -> dict[str, Any]:
    """Time ``submit_batch`` at each size in :data:`SIZES` on a fresh data directory."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="sop-kbatch-") as tmp:
        scenario = Scenario(Path(tmp), clients=1)
        try:
            requests = _requests(scenario.token, decisions * len(SIZES) + 64)
            scenario.sop.submit_batch(requests[:64])  # warm-up: proofs recorded, caches filled
            at = 64
            for size in SIZES:
                count = max(1, decisions // size)
                batches = [requests[at + i * size : at + (i + 1) * size] for i in range(count)]
                at += count * size
                cpu, wall = time.process_time(), time.perf_counter()
                for batch in batches:
                    scenario.sop.submit_batch(batch)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                rows.append(
                    {
                        "batch": size,
                        "batches": count,
                        "cpu_us_per_batch": round(cpu / count * 1e6, 1),
                        "cpu_us_per_decision": round(cpu / (count * size) * 1e6, 1),
                        "wall_us_per_batch": round(wall / count * 1e6, 1),
                    }
                )
        finally:
            scenario.close()
    small, large = rows[0], rows[-1]
    each = (large["cpu_us_per_batch"] - small["cpu_us_per_batch"]) / (
        large["batch"] - small["batch"]
    )
    fixed = small["cpu_us_per_batch"] - each * small["batch"]
    return {"rows": rows, "fixed_us": round(fixed, 1), "each_us": round(each, 1)}


def main() -> None:
    """Parse the flags, run, print a table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=3000, help="decisions per batch size")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    if args.decisions < 64:
        parser.error("--decisions must be at least 64 (one batch of the largest size)")
    result = run(args.decisions)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print("| batch | batches | CPU us/batch | CPU us/decision | wall us/batch |")
    print("|---:|---:|---:|---:|---:|")
    for r in result["rows"]:
        print(
            f"| {r['batch']} | {r['batches']:,} | {r['cpu_us_per_batch']:,.1f}"
            f" | {r['cpu_us_per_decision']:,.1f} | {r['wall_us_per_batch']:,.1f} |"
        )
    print(
        f"\nfit: {result['fixed_us']:,.0f} us of CPU per batch + {result['each_us']:,.1f} us"
        " per decision"
    )


if __name__ == "__main__":
    main()
