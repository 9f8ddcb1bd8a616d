"""The scenario of ``bench_e2e.py``: a booted SOP, DRAC's persist requests, submitter threads.

:class:`Scenario` boots SOP in a fresh directory, activates the demo's sound
policy set and admits one DRAC capability for ``artifacts/drac/**``.
:func:`run_clients` runs an operation from N submitter threads released
together and records every latency, the CPU the process used, the log batches
the receipts name and any operation that did not come back as expected.
:func:`fs_floor` and :func:`log_floor` time what the disk and the log allow
on their own (no SOP around them), as reference points.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sop_verified.core.health import Health
from sop_verified.core.request import Decision
from sop_verified.nexus.demo import SOUND_POLICIES
from sop_verified.nexus.sop import SOP, wall_clock
from sop_verified.storage.sqlite import SQLiteBackend
from sop_verified.tools.signed_note import Signer, generate

__all__ = [
    "CLIENT_LOOP",
    "NAMES_PER_CLIENT",
    "PAYLOAD_BYTES",
    "RunResult",
    "Scenario",
    "fs_floor",
    "log_floor",
    "problem",
    "run_clients",
    "run_coroutines",
    "sha256_hex",
]

PAYLOAD_BYTES = 4096
NAMES_PER_CLIENT = 8
CLIENT_LOOP = "_client_loop"  # py-spy keeps the stacks of the submitter threads by this name


def sha256_hex(data: bytes) -> str:
    """Lowercase hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


class Scenario:
    """A booted SOP with the demo's sound policies and one DRAC capability."""

    def __init__(
        self,
        root: Path,
        *,
        clients: int,
        names: int = NAMES_PER_CLIENT,
        toml: str = "",
        boot: dict[str, Any] | None = None,
    ) -> None:
        """Initialise and boot SOP in ``root``, activate the policies, admit DRAC.

        Args:
            root: an empty directory (the data directory goes in ``root/data``).
            clients: how many submitters will use it (each has its own names).
            names: how many artifact names each client cycles over.
            toml: appended to ``sop.toml`` before the first boot (e.g. ``[events.nats]``).
            boot: further keyword arguments of ``SOP.boot`` (e.g. ``events=``).

        Raises:
            RuntimeError: SOP did not boot READY.
        """
        data = root / "data"
        SOP.init(data)
        if toml:
            with (data / "sop.toml").open("a", encoding="utf-8") as f:
                f.write("\n" + toml)
        self.sop = SOP.boot(data, **(boot or {}))
        if self.sop.health is not Health.READY:
            raise RuntimeError(f"SOP booted `{self.sop.health}`, not READY")
        (root / "policies").mkdir()
        (root / "policies" / "policies.toml").write_text(SOUND_POLICIES)
        self.sop.activate_policy(root / "policies")
        actions = ["artifact.persist", "artifact.read"]
        _, self.token = self.sop.admit(
            "drac", actions, ["artifacts/drac/**"], expires=wall_clock() + 7200
        )
        self.clients, self.names = clients, names

    def resource(self, client: int, i: int) -> str:
        """The artifact name client ``client`` persists at its ``i``-th operation."""
        return f"artifacts/drac/bench/c{client:02d}/obj{i % self.names}.bin"

    def request(self, tag: str, client: int, i: int, resource: str | None = None) -> dict[str, Any]:
        """A persist request as the bridge hands it over (a JSON object)."""
        return {
            "request_id": f"e2e-{tag}-{client}-{i}",
            "principal": "drac",
            "action": "artifact.persist",
            "resource": resource or self.resource(client, i),
            "capability": self.token,
            "context": {"session": "bench"},
        }

    @staticmethod
    def payload(tag: str, client: int, i: int, size: int = PAYLOAD_BYTES) -> bytes:
        """``size`` bytes (4 KiB) that differ for every operation (a new blob each time)."""
        return f"{tag}:{client}:{i}:".encode().ljust(size, b"\x00")

    def persist(
        self, tag: str, client: int, i: int, resource: str | None = None, size: int = PAYLOAD_BYTES
    ) -> Decision:
        """One gated, durable persist of ``size`` bytes (``sop.persist``)."""
        request = self.request(tag, client, i, resource)
        return self.sop.persist(request, self.payload(tag, client, i, size))

    async def persist_async(
        self, tag: str, client: int, i: int, resource: str | None = None
    ) -> Decision:
        """The same write through ``sop.persist_async`` (a coroutine submitter)."""
        request = self.request(tag, client, i, resource)
        return await self.sop.persist_async(request, self.payload(tag, client, i))

    def submit(self, tag: str, client: int, i: int) -> Decision:
        """The decision only (``sop.submit``, no effect): the same request, content bound."""
        request = self.request(tag, client, i)
        data = self.payload(tag, client, i)
        request["content_digest"] = "sha256:" + sha256_hex(data)
        request["context"]["size_bytes"] = len(data)
        return self.sop.submit(request)

    def warm(self) -> None:
        """Persist every name once: each path's scope obligation is proved and recorded.

        Raises:
            RuntimeError: a warm-up operation was refused.
        """
        for client in range(self.clients):
            for k in range(self.names):
                why = problem(self.persist("warm", client, k), effect=True)
                if why is not None:
                    raise RuntimeError(f"warm-up was refused: {why}")

    def close(self) -> None:
        """Stop SOP."""
        self.sop.close()


def problem(decision: object, *, effect: bool) -> str | None:
    """Why ``decision`` is not the expected ALLOW (with its effect written), or None."""
    if not isinstance(decision, Decision):
        return None  # a floor run: nothing to check
    if not decision.allowed:
        first = decision.reasons[0] if decision.reasons else None
        return f"DENY {first.stage}/{first.code}: {first.message}" if first else "DENY"
    if effect and (decision.write is None or decision.write.outcome != "written"):
        return f"ALLOW without a written effect: {decision.write}"
    return None


@dataclass
class RunResult:
    """One run: latencies of every operation, wall and CPU time, refusals, log batches."""

    label: str
    threads: int
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    cpu_user: float = 0.0
    cpu_system: float = 0.0
    problems: list[str] = field(default_factory=list)
    tree_sizes: set[int] = field(default_factory=set)
    receipts: int = 0
    offered: float | None = None

    def summary(self) -> dict[str, Any]:
        """Throughput, latency percentiles (nearest rank), CPU per op, log batching."""
        lat, n = sorted(self.latencies), len(self.latencies)

        def pct(q: float) -> float | None:
            return round(lat[min(n - 1, int(n * q))] * 1e3, 2) if n else None

        return {
            "label": self.label,
            "threads": self.threads,
            "offered_ops_per_s": self.offered,
            "ops": n,
            "seconds": round(self.seconds, 3),
            "ops_per_s": round(n / self.seconds) if self.seconds else 0,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "max_ms": round(lat[-1] * 1e3, 2) if n else None,
            "cpu_us_per_op": round((self.cpu_user + self.cpu_system) / n * 1e6) if n else None,
            "cpu_user_us_per_op": round(self.cpu_user / n * 1e6) if n else None,
            "cpu_system_us_per_op": round(self.cpu_system / n * 1e6) if n else None,
            "log_batches": len(self.tree_sizes),
            "entries_per_batch": (
                round(self.receipts / len(self.tree_sizes), 1) if self.tree_sizes else None
            ),
            "refused": len(self.problems),
            "first_refusals": self.problems[:3],
        }


def run_clients(
    label: str,
    threads: int,
    per_thread: int,
    op: Callable[[int, int], object],
    *,
    effect: bool,
    rate: float | None = None,
) -> RunResult:
    """Run ``op(client, i)`` from ``threads`` submitter threads, ``per_thread`` times each.

    Closed loop by default: each submitter starts its next operation as soon as
    the last one returned. With ``rate``, open loop: the operations are
    scheduled ``1 / rate`` seconds apart, dealt round-robin to the submitters,
    each of which waits for its operation's time (and starts at once when it is
    late); a latency is measured from the scheduled time, so time spent queued
    behind a slow system counts (no coordinated omission).

    Args:
        label: names the run.
        threads: submitter threads, released together by a barrier.
        per_thread: operations each submitter runs, one after the other.
        op: the operation; a :class:`Decision` it returns is checked with :func:`problem`.
        effect: whether an ALLOW must carry a written effect.
        rate: offered operations per second, all submitters together (None: closed loop).

    Returns:
        The run; ``problems`` lists every operation that was not the expected ALLOW.
    """
    result = RunResult(label, threads)
    lats: list[list[float]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)
    lock = threading.Lock()
    lead = 0.05 if rate else 0.0  # the schedule starts once every submitter is waiting
    start = time.perf_counter() + 3600.0  # set before the barrier opens

    def _client_loop(client: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            if rate:
                due = start + (i * threads + client) / rate
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            else:
                due = time.perf_counter()
            decision = op(client, i)
            lats[client].append(time.perf_counter() - due)
            _account(result, lock, decision, effect=effect)

    workers = [threading.Thread(target=_client_loop, args=(c,)) for c in range(threads)]
    for w in workers:
        w.start()
    cpu0 = os.times()
    start = time.perf_counter() + lead
    barrier.wait()
    for w in workers:
        w.join()
    result.seconds = time.perf_counter() - start
    cpu1 = os.times()
    result.cpu_user, result.cpu_system = cpu1.user - cpu0.user, cpu1.system - cpu0.system
    result.latencies = [x for per in lats for x in per]
    result.offered = rate
    return result


def run_coroutines(
    label: str,
    tasks: int,
    per_task: int,
    op: Callable[[int, int], Awaitable[object]],
    *,
    effect: bool,
    rate: float | None = None,
) -> RunResult:
    """:func:`run_clients` for coroutines: ``tasks`` submitters on one event loop.

    The same schedule (closed loop, or open loop at ``rate`` with latency from
    the scheduled time) and the same accounting; the submitters are asyncio
    tasks of one ``asyncio.run``, each awaiting ``op(client, i)`` in turn.
    """
    result = RunResult(label, tasks)
    lats: list[list[float]] = [[] for _ in range(tasks)]
    lock = threading.Lock()

    async def main() -> None:
        start = time.perf_counter() + (0.05 if rate else 0.0)

        async def submitter(client: int) -> None:
            for i in range(per_task):
                if rate:
                    due = start + (i * tasks + client) / rate
                    wait = due - time.perf_counter()
                    if wait > 0:
                        await asyncio.sleep(wait)
                else:
                    due = time.perf_counter()
                decision = await op(client, i)
                lats[client].append(time.perf_counter() - due)
                _account(result, lock, decision, effect=effect)

        cpu0 = os.times()
        await asyncio.gather(*(submitter(c) for c in range(tasks)))
        result.seconds = time.perf_counter() - start
        cpu1 = os.times()
        result.cpu_user, result.cpu_system = cpu1.user - cpu0.user, cpu1.system - cpu0.system

    asyncio.run(main())
    result.latencies = [x for per in lats for x in per]
    result.offered = rate
    return result


def _account(result: RunResult, lock: threading.Lock, decision: object, *, effect: bool) -> None:
    sizes = []
    if isinstance(decision, Decision):
        if decision.receipt is not None:
            sizes.append(decision.receipt.tree_size)
        if decision.write is not None:
            sizes.append(decision.write.receipt.tree_size)
    why = problem(decision, effect=effect)
    with lock:
        result.tree_sizes.update(sizes)
        result.receipts += len(sizes)
        if why is not None:
            result.problems.append(why)


# ---- floors: the disk and the log on their own ----------------------------------------------
def fs_floor(root: Path, threads: int, per_thread: int) -> RunResult:
    """The filesystem alone: temp file, 4 KiB, fsync, rename, fsync the directory (per op).

    Args:
        root: an empty directory on the same filesystem as the scope roots.
        threads: concurrent writers.
        per_thread: files each writer stores.

    Returns:
        The run (no decisions, nothing to check).
    """
    fds = []
    for k in range(256):  # the same fan-out as content-addressed blobs
        (root / f"{k:02x}").mkdir(parents=True)
        fds.append(os.open(root / f"{k:02x}", os.O_RDONLY | os.O_DIRECTORY))
    data = b"\x00" * PAYLOAD_BYTES

    def write(client: int, i: int) -> None:
        dfd = fds[secrets.randbelow(256)]
        tmp, name = f".tmp-{client}-{i}-{secrets.token_hex(4)}", f"{client}-{i}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=dfd)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        os.fsync(dfd)

    try:
        return run_clients("fs", threads, per_thread, write, effect=False)
    finally:
        for fd in fds:
            os.close(fd)


def log_floor(root: Path, threads: int, per_thread: int, entry: bytes) -> RunResult:
    """The signed log alone (SQLite WAL, synchronous=FULL, group commit): one append per op.

    Args:
        root: an empty directory.
        threads: concurrent appenders.
        per_thread: appends each makes.
        entry: a representative payload (a real decision entry).

    Returns:
        The run (receipts counted into ``tree_sizes``).
    """
    origin = "bench.local/e2e-floor"
    store = SQLiteBackend.open(root / "floor.db")
    store.log.open(origin=origin, signer=Signer.from_string(generate(origin)[0]))
    sizes: set[int] = set()

    def append(client: int, i: int) -> None:
        sizes.add(store.log.append_receipt(entry + b" %d %d" % (client, i)).tree_size)

    try:
        result = run_clients("log", threads, per_thread, append, effect=False)
    finally:
        store.close()
    result.tree_sizes, result.receipts = sizes, len(result.latencies)
    return result
