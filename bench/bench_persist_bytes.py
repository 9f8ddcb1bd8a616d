"""What a persist costs with its bytes in PostgreSQL against SQLite and files (not a test).

Boots SOP twice, on SQLite (a temporary data directory: small content-addressed
blobs in the database, everything else files, fsynced) and on PostgreSQL (a
scratch schema on the server the tests use: every byte in BYTEA rows, ADR 0015),
and times, one caller at a time, ``SOP.persist`` of distinct payloads:

* 4 KiB into a content-addressed scope: the linked path (decision, effect and
  bytes in one durable transaction) on both backends;
* 4 KiB into a versioned scope, and 1 MiB into both: two steps (the decision
  logged, the bytes stored durably, then the effect logged);

then ``SOP.read`` of every 1 MiB object (digest-verified against the log), and
for a floor, ``SOP.submit`` of a persist decision alone (logged, never carried
out: a two-step persist logs two entries, this one). It
prints per operation the median and 99th percentile latency and the rate,
and the ratio PostgreSQL / SQLite of the medians. Payloads are random (as
compressed artifacts are), so PostgreSQL's lz4 has nothing to win.

Run: ``python3 bench/bench_persist_bytes.py [--small N] [--large N] [--json]``
(defaults 300 and 200; about a minute). The server is ``SOP_BENCH_POSTGRES_DSN``
or 127.0.0.1:5432, database ``test``, trust authentication.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from sop_verified.core.health import Health
from sop_verified.core.request import Permission
from sop_verified.nexus.sop import SOP

DSN = os.environ.get("SOP_BENCH_POSTGRES_DSN", "host=127.0.0.1 port=5432 dbname=test user=postgres")
POLICIES = """
[[policy]]
id = "drac-artifacts"
effect = "permit"
principal = ["drac"]
action = ["artifact.persist", "artifact.read"]
resource = ["artifacts/drac/**"]
channel = "bridge"

[[policy]]
id = "csp-state"
effect = "permit"
principal = ["csp"]
action = ["state.persist", "artifact.read"]
resource = ["state/csp/**"]
channel = "bridge"
"""
GRANTS = {
    "drac": (["artifact.persist", "artifact.read"], ["artifacts/drac/**"]),
    "csp": (["state.persist", "artifact.read"], ["state/csp/**"]),
}
KIB = 1024
CASES = (  # label, principal, action, resource prefix, size
    ("4 KiB content-addressed (linked)", "drac", "artifact.persist", "artifacts/drac/s", 4 * KIB),
    ("4 KiB versioned (two steps)", "csp", "state.persist", "state/csp/s", 4 * KIB),
    ("1 MiB content-addressed (two steps)", "drac", "artifact.persist", "artifacts/drac/l", KIB**2),
    ("1 MiB versioned (two steps)", "csp", "state.persist", "state/csp/l", KIB**2),
)


def _boot(data: Path, dsn: str | None, schema: str | None) -> tuple[SOP, dict[str, str]]:
    if dsn is None:
        SOP.init(data)
    else:
        SOP.init(data, dsn=dsn, schema=schema or "sop")
    sop = SOP.boot(data)
    if sop.health is not Health.READY:
        raise SystemExit(f"SOP did not boot: {sop.boot_report}")
    policies = data.parent / f"{data.name}-policies"
    policies.mkdir()
    (policies / "policies.toml").write_text(POLICIES)
    sop.activate_policy(policies)
    expires = int(time.time()) + 3600
    tokens = {p: sop.admit(p, *grant, expires=expires)[1] for p, grant in GRANTS.items()}
    return sop, tokens


def _timed(n: int, call: Callable[[int], Any]) -> dict[str, float]:
    times = []
    for i in range(n):
        t = time.perf_counter()
        call(i)
        times.append(time.perf_counter() - t)
    times.sort()
    return {
        "n": n,
        "median_ms": statistics.median(times) * 1e3,
        "p99_ms": times[min(n - 1, int(n * 0.99))] * 1e3,
        "per_s": n / sum(times),
    }


Request = Callable[[str, str, str], dict[str, Any]]


def _case(
    sop: SOP, request: Request, case: tuple[str, str, str, str, int], n: int
) -> dict[str, dict[str, float]]:
    """Persist ``n`` distinct payloads of one case (and read the 1 MiB ones back)."""
    label, principal, action, prefix, size = case
    payloads = [secrets.token_bytes(size) for _ in range(n)]  # distinct: nothing is deduplicated

    def persist(i: int) -> None:
        d = sop.persist(request(principal, action, f"{prefix}{i}"), payloads[i])
        if d.effect is not Permission.ALLOW:
            raise SystemExit(f"persist refused: {d.reasons}")

    def read(i: int) -> None:
        got = sop.read(request(principal, "artifact.read", f"{prefix}{i}"))
        if got.data != payloads[i]:
            raise SystemExit(f"read refused: {got.decision.reasons}")

    out = {f"persist {label}": _timed(n, persist)}
    if size == KIB**2:
        out[f"read {label.split(' (')[0]}"] = _timed(n, read)
    return out


def _run(sop: SOP, tokens: dict[str, str], counts: dict[int, int]) -> dict[str, dict[str, float]]:
    seq = [0]

    def request(principal: str, action: str, resource: str) -> dict[str, Any]:
        seq[0] += 1
        return {
            "request_id": f"b-{seq[0]}",
            "principal": principal,
            "action": action,
            "resource": resource,
            "capability": tokens[principal],
        }

    def decide(i: int) -> None:  # the floor: one logged decision, no effect, no bytes
        r = request("csp", "state.persist", f"state/csp/d{i}")
        r.update(content_digest="sha256:" + "0" * 64, context={"size_bytes": 4 * KIB})
        if sop.submit(r).effect is not Permission.ALLOW:
            raise SystemExit("decision refused")

    out = {"decision alone (logged, no effect)": _timed(counts[4 * KIB], decide)}
    for case in CASES:
        out.update(_case(sop, request, case, counts[case[4]]))
    return out


def _drop(schema: str) -> None:
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def main() -> None:
    """Time both backends and print the table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=300, help="4 KiB persists per case")
    parser.add_argument("--large", type=int, default=200, help="1 MiB persists per case")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    counts = {4 * KIB: args.small, KIB**2: args.large}
    results: dict[str, dict[str, dict[str, float]]] = {}
    schema = f"sop_bench_{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory() as tmp:
        for backend, dsn in (("sqlite", None), ("postgresql", DSN)):
            sop, tokens = _boot(Path(tmp) / backend, dsn, schema)
            try:
                results[backend] = _run(sop, tokens, counts)
            finally:
                sop.close()
                if dsn is not None:
                    _drop(schema)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    head = ("operation", "backend", "median ms", "p99 ms", "per s", "pg/sq")
    print(f"{head[0]:44} {head[1]:10} {head[2]:>10} {head[3]:>8} {head[4]:>8} {head[5]:>6}")
    for op, sq in results["sqlite"].items():
        pg = results["postgresql"][op]
        for backend, r in (("sqlite", sq), ("postgresql", pg)):
            ratio = f"{pg['median_ms'] / sq['median_ms']:.2f}" if backend == "postgresql" else ""
            print(
                f"{op:44} {backend:10} {r['median_ms']:10.2f} {r['p99_ms']:8.2f}"
                f" {r['per_s']:8.0f} {ratio:>6}"
            )


if __name__ == "__main__":
    main()
