"""Boot of a real SOP data directory on a large log (issue 13, item 10): not a test.

Builds a data directory the way SOP makes one (``SOP.init``, then a booted SOP):
the demo's sound policy set activated, DRAC's capability and ``--capabilities``
more admitted (every tenth of them revoked), ``--objects`` 4 KiB writes through
``sop.persist_async`` (32 coroutine submitters, cycling over ``--names``
artifact names, by default one per 8 writes: each name's scope obligation is
proved once and its verdict stored, and no name holds more versions than the
scope keeps, so boot repair has nothing to tombstone), and a few reads. Then SOP
is closed and the log is filled to ``--entries`` entries in bulk, through the
store's own log opened as boot opens it (``open_signed_log``: the directory's
checkpoint key and state key, its rollback anchor checked and kept) on the path
``bench_log.py`` times (one signed checkpoint per batch of 100,000):
each entry is one of the real decision entries the reads and a refused write
logged, with a fresh request id (entries that change no derived table, as most
of a real log's entries). Every appended entry passes through the state seal's
trigger, as any append does.

Then it times ``SOP.boot(data_dir)`` to READY, ``--boots`` times (the page
cache warm: the directory was just written), and reports the median, each
service's start and self-test (probes wrap the composition root's steps for
the length of the run), and the derived tables' row counts. The ``state``
service recomputes every derived table's keyed digest (INV-11): its cost
grows with the derived rows, not with the log, which is why ``--objects``
is the axis of the second configuration.

It also runs on a checkout from before the state seal (8f61b90: the store
takes no state key, there is no ``state`` service), for a side-by-side run.

Run: ``python3 bench/bench_boot.py [--entries 1000000] [--objects 5000 100000]
[--boots 5] [--keep DIR [--reuse]] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sop_verified.core.health import Health
from sop_verified.core.persistence.entries import index_entries
from sop_verified.nexus import root as composition
from sop_verified.nexus.config import load_config, load_mac_key
from sop_verified.nexus.demo import SOUND_POLICIES
from sop_verified.nexus.keys import load_checkpoint_signer
from sop_verified.nexus.log_service import open_signed_log
from sop_verified.nexus.sop import SOP, wall_clock
from sop_verified.storage.sqlite import SQLiteBackend

try:
    from sop_verified.storage.sqlite_seal import SEALED

    DERIVED: tuple[str, ...] = tuple(SEALED)
    SEALING = True
except ImportError:  # a checkout before the state seal (8f61b90), for a side-by-side run
    DERIVED = (
        "capabilities",
        "revocations",
        "policy_sets",
        "verdicts",
        "persist_effects",
        "persist_pending",
        "persist_tombstones",
        "persist_versions",
        "persist_inline",
    )
    SEALING = False

__all__ = ["build", "main", "run", "time_boots"]

TARGET_S = 2.0
"""Boot on a 1,000,000-entry log: at most 2 s (DESIGN.md section 9, issue 13 item 10)."""

BATCH = 100_000
"""Bulk entries per durable transaction (and signed checkpoint), as in ``bench_log.py``."""

OBJECT_BYTES = 4096
SUBMITTERS = 32
KEEP = 8
"""The shipped DRAC scope keeps 8 versions of a name: the writes spread over at least
``objects / KEEP`` names leave boot repair no superseded version to tombstone, so every
boot timed is the steady state (with fewer names the first boot tombstones the excess,
one durable append each)."""


# ---- building the data directory -------------------------------------------------------------
def build(
    data: Path, *, entries: int, objects: int, names: int, capabilities: int
) -> dict[str, Any]:
    """Make a data directory with a policy, capabilities, objects, and a log of ``entries``.

    Args:
        data: where the data directory goes (must not exist, or be empty).
        entries: the log's size at the end (at least what the writes logged).
        objects: how many 4 KiB writes to persist.
        names: how many artifact names the writes cycle over.
        capabilities: how many more capabilities to admit (a tenth revoked).

    Returns:
        What was built and how long each part took.

    Raises:
        RuntimeError: SOP did not boot READY, refused a write, or logged more
            entries than ``entries`` before the bulk fill.
    """
    t0 = time.perf_counter()
    SOP.init(data)
    with SOP.boot(data) as sop:
        if sop.health is not Health.READY:
            raise RuntimeError(f"SOP booted `{sop.health}`, not READY")
        policies = data.parent / "policies"
        policies.mkdir(exist_ok=True)
        (policies / "policies.toml").write_text(SOUND_POLICIES)
        sop.activate_policy(policies)
        expires = wall_clock() + 30 * 86400
        actions = ["artifact.persist", "artifact.read"]
        _, token = sop.admit("drac", actions, ["artifacts/drac/**"], expires=expires)
        for k in range(capabilities):
            cap, _ = sop.admit("drac", actions, [f"artifacts/drac/c{k}/**"], expires=expires)
            if k % 10 == 9:
                sop.revoke(cap.id)
        t1 = time.perf_counter()
        asyncio.run(_persist_all(sop, token, objects, names))
        t2 = time.perf_counter()
        templates = _decision_templates(sop, token)
        logged = sop.log.size
    if logged > entries:
        raise RuntimeError(f"the writes logged {logged:,} entries, more than --entries {entries:,}")
    _fill(data, logged, entries, templates)
    t3 = time.perf_counter()
    return {
        "entries": entries,
        "entries_by_sop": logged,
        "entries_in_bulk": entries - logged,
        "objects": objects,
        "names": names,
        "object_bytes": OBJECT_BYTES,
        "capabilities": capabilities + 1,
        "revoked": capabilities // 10,
        "db_mib": round((data / composition.DB_NAME).stat().st_size / 2**20, 1),
        "seconds": {
            "setup": round(t1 - t0, 1),
            "persist": round(t2 - t1, 1),
            "persist_per_s": round(objects / (t2 - t1)) if objects else None,
            "bulk_fill": round(t3 - t2, 1),
            "bulk_per_s": round((entries - logged) / (t3 - t2)) if entries > logged else None,
        },
    }


def _request(token: str, rid: str, action: str, resource: str) -> dict[str, Any]:
    return {
        "request_id": rid,
        "principal": "drac",
        "action": action,
        "resource": resource,
        "capability": token,
        "context": {"session": "bench"},
    }


def _resource(i: int, names: int) -> str:
    return f"artifacts/drac/bench/n{i % names:05d}/obj.bin"


async def _persist_all(sop: SOP, token: str, objects: int, names: int) -> None:
    """``objects`` writes from ``SUBMITTERS`` coroutines; each must be ALLOW and written."""
    queue = iter(range(objects))

    async def submitter() -> None:
        for i in queue:
            data = f"boot:{i}:".encode().ljust(OBJECT_BYTES, b"\x00")
            rid = f"boot-persist-{i}"
            d = await sop.persist_async(
                _request(token, rid, "artifact.persist", _resource(i, names)), data
            )
            if not d.allowed or d.write is None or d.write.outcome != "written":
                raise RuntimeError(f"write {i} was not ALLOWed and written: {d}")

    await asyncio.gather(*(submitter() for _ in range(SUBMITTERS)))


def _decision_templates(sop: SOP, token: str) -> list[bytes]:
    """Real decision entries with their request id made a ``%s`` slot (no derived rows)."""
    probes = [
        ("boot-template-read", "artifact.read", _resource(0, 1)),  # ALLOW, not a persist
        ("boot-template-deny", "artifact.persist", "artifacts/elsewhere/x.bin"),  # DENY
    ]
    for rid, action, resource in probes:
        sop.submit(_request(token, rid, action, resource))
    size = sop.log.size
    rows = sop.store.log.log_entries(max(0, size - 16), size)
    out = []
    for rid, _, _ in probes:
        found = [p for _, _, p in rows if b'"type":"decision"' in p and rid.encode() in p]
        if len(found) != 1:
            raise RuntimeError(f"no single decision entry for `{rid}` among the newest entries")
        out.append(found[0].replace(b"%", b"%%").replace(rid.encode(), b"%s"))
    return out


def _fill(data: Path, start: int, entries: int, templates: list[bytes]) -> None:
    """Append decision entries up to ``entries`` through the store's log, as SOP opens it."""
    config = load_config(data)
    mac_key, _ = load_mac_key(data)
    db = data / composition.DB_NAME
    store = SQLiteBackend.open(db, state_key=mac_key) if SEALING else SQLiteBackend.open(db)
    try:
        store.set_entry_indexer(index_entries)
        signer = load_checkpoint_signer(data, config.origin)
        log, _ = open_signed_log(data, store, config.origin, signer)  # as boot opens it: anchored
        for lo in range(start, entries, BATCH):
            hi = min(entries, lo + BATCH)
            log.append_many(
                [templates[i % len(templates)] % (b"bulk-%d" % i,) for i in range(lo, hi)]
            )
    finally:
        store.close()


# ---- timing boots --------------------------------------------------------------------------
@contextmanager
def _probed_steps(samples: dict[str, list[float]]) -> Iterator[None]:
    """Wrap each service's start and self-test in the composition root with a timer."""

    def timed(name: str, step: Callable[[Any], None]) -> Callable[[Any], None]:
        def run(b: Any) -> None:
            t0 = time.perf_counter()
            try:
                step(b)
            finally:
                samples.setdefault(name, []).append(time.perf_counter() - t0)

        return run

    original = composition._STEPS
    composition._STEPS = {
        name: (timed(name, start), timed(name, test)) for name, (start, test) in original.items()
    }
    try:
        yield
    finally:
        composition._STEPS = original


def time_boots(data: Path, boots: int) -> dict[str, Any]:
    """Boot ``data`` ``boots`` times (each closed before the next); times and service shares.

    Raises:
        RuntimeError: a boot was not READY.
    """
    totals: list[float] = []
    per_service: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    first: dict[str, float] = {}
    for _ in range(boots):
        one: dict[str, list[float]] = {}
        with _probed_steps(one):
            t0 = time.perf_counter()
            sop = SOP.boot(data)
            elapsed = time.perf_counter() - t0
        try:
            if sop.health is not Health.READY:
                raise RuntimeError(f"boot was `{sop.health}`: {sop.boot_report.detail}")
            if not counts:
                counts = _row_counts(sop)
                counts["log_entries"] = sop.log.size
        finally:
            sop.close()
        totals.append(elapsed)
        for name, xs in one.items():
            per_service.setdefault(name, []).append(sum(xs))  # start + self-test
        first = first or {name: round(sum(xs), 4) for name, xs in one.items()}
    services = {name: round(statistics.median(xs), 4) for name, xs in per_service.items()}
    return {
        "boots": boots,
        "seconds": [round(t, 4) for t in totals],
        "median_s": round(statistics.median(totals), 4),
        "min_s": round(min(totals), 4),
        "max_s": round(max(totals), 4),
        "services_median_s": services,
        "first_boot_services_s": first,
        "outside_services_s": round(statistics.median(totals) - sum(services.values()), 4),
        "rows": counts,
    }


def _row_counts(sop: SOP) -> dict[str, int]:
    db = getattr(sop.store, "_db", None)  # read-only introspection of the backend's connection
    if db is None:
        return {}
    return {t: db.query(f"SELECT count(*) FROM {t}")[0][0] for t in DERIVED}


# ---- the whole run -----------------------------------------------------------------------------
def run(
    entries: int,
    objects: list[int],
    boots: int,
    names: int | None,
    capabilities: int,
    keep: Path | None = None,
    *,
    reuse: bool = False,
) -> dict[str, Any]:
    """Build one data directory per ``objects`` count and time its boots.

    With ``keep``, each data directory is built in ``keep/objects-N/data`` and left
    there (to profile a boot on it, or to time its boots again with ``reuse``,
    e.g. alternating with another checkout's); otherwise in a temporary directory.
    """
    out: dict[str, Any] = {"setup": _machine(), "configs": []}
    for n in objects:
        with tempfile.TemporaryDirectory(prefix="sop-bench-boot-") as tmp:
            data = (keep / f"objects-{n}" if keep else Path(tmp)) / "data"
            facts = data.parent / "built.json"
            if reuse and facts.exists():
                built = json.loads(facts.read_text())
            else:
                data.parent.mkdir(parents=True, exist_ok=True)
                built = build(
                    data,
                    entries=entries,
                    objects=n,
                    names=names or max(1, -(-n // KEEP)),
                    capabilities=capabilities,
                )
                facts.write_text(json.dumps(built))
            out["configs"].append({"built": built, "boot": time_boots(data, boots)})
    out["setup"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


def _machine() -> dict[str, Any]:
    return {
        "sealed": SEALING,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def render(r: dict[str, Any]) -> str:
    """The human-readable table."""
    services = sorted({s for c in r["configs"] for s in c["boot"]["services_median_s"]})
    lines = [
        "| log entries | objects (names) | derived rows | DB MiB | boot median s (min-max) "
        "| state s | log s | proof_gate s | target | met |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for c in r["configs"]:
        b, boot = c["built"], c["boot"]
        s = boot["services_median_s"]
        rows = sum(v for k, v in boot["rows"].items() if k != "log_entries")
        met = "PASS" if boot["median_s"] <= TARGET_S else "FAIL"
        lines.append(
            f"| {b['entries']:,} | {b['objects']:,} ({b['names']:,}) | {rows:,} | {b['db_mib']:,} "
            f"| {boot['median_s']} ({boot['min_s']}-{boot['max_s']}) | {s.get('state')} "
            f"| {s.get('log')} | {s.get('proof_gate')} | <= {TARGET_S:g} s | {met} |"
        )
    lines += [
        "",
        "| service | "
        + " | ".join(f"{c['built']['objects']:,} objects" for c in r["configs"])
        + " |",
    ]
    lines.append("|---|" + "---:|" * len(r["configs"]))
    for name in services:
        cells = " | ".join(str(c["boot"]["services_median_s"].get(name)) for c in r["configs"])
        lines.append(f"| {name} (start + self-test, s) | {cells} |")
    cells = " | ".join(str(c["boot"]["outside_services_s"]) for c in r["configs"])
    lines.append(f"| outside the services (manifest, wiring), s | {cells} |")
    setup = r["setup"]
    lines += [
        "",
        f"machine: Python {setup['python']}, {setup['cpus']} CPUs, load average "
        f"{setup['load_average']} before, {setup['load_average_after']} after; page cache warm",
    ]
    for c in r["configs"]:
        b = c["built"]
        lines.append(
            f"built ({b['objects']:,} objects): {b['entries_by_sop']:,} entries by SOP, "
            f"{b['entries_in_bulk']:,} in bulk; seconds {b['seconds']}; rows {c['boot']['rows']}"
        )
    return "\n".join(lines)


def main() -> None:
    """Parse the options, run, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000, help="log size")
    parser.add_argument(
        "--objects",
        type=int,
        nargs="+",
        default=[5000, 100_000],
        help="persisted 4 KiB writes, one data directory per value",
    )
    parser.add_argument(
        "--names", type=int, help=f"artifact names written over (default: objects / {KEEP})"
    )
    parser.add_argument("--capabilities", type=int, default=200, help="capabilities admitted")
    parser.add_argument("--boots", type=int, default=5, help="boots timed per data directory")
    parser.add_argument("--keep", type=Path, help="build the data directories here and keep them")
    parser.add_argument(
        "--reuse", action="store_true", help="with --keep: time the boots of what is built there"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    if args.reuse and args.keep is None:
        parser.error("--reuse needs --keep DIR")
    result = run(
        args.entries,
        args.objects,
        args.boots,
        args.names,
        args.capabilities,
        keep=args.keep,
        reuse=args.reuse,
    )
    print(json.dumps(result, indent=2) if args.json else render(result))


if __name__ == "__main__":
    main()
