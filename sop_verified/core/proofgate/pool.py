"""The solver pool: isolated z3 workers, each with a warm context (INV-2 on every failure).

A thin layer over :class:`~sop_verified.tools.workerpool.WorkerPool`: it fixes
the worker module and caps, refuses a worker whose solver identity differs
from the kernel's (determinism), and turns every worker failure (timeout,
memory, CPU cap, crash, busy, closed) into an ``unknown`` reply with a code,
so the gate can deny without special cases.
"""

from __future__ import annotations

from typing import Any

from sop_verified.core.contracts import ensure, invariant, require
from sop_verified.core.proofgate.smtlib import CompiledObligation
from sop_verified.core.proofgate.solver import solver_identity
from sop_verified.tools.workerpool import CallResult, PoolStats, WorkerLimits, WorkerPool

__all__ = ["WORKER_MODULE", "SolverPool"]

WORKER_MODULE = "sop_verified.core.proofgate.worker"
_FAILURE_CODES = {
    "timeout": "timeout",
    "memory": "memory",
    "cpu": "cpu limit",
    "crash": "worker crash",
    "protocol": "worker crash",
    "start": "worker crash",
    "busy": "pool busy",
    "closed": "gate closed",
}
_STATUSES = ("unsat", "sat", "unknown", "error")


def _identity_fields(identity: dict[str, Any]) -> tuple[Any, ...]:
    return (
        identity.get("name"),
        identity.get("version"),
        identity.get("params"),
        identity.get("engines"),
    )


def _failure_reply(call: CallResult) -> dict[str, Any]:
    code = _FAILURE_CODES.get(call.failure, "worker crash")
    return {"status": "unknown", "code": code, "detail": call.detail, "pid": call.pid}


@invariant(lambda self: self.rlimit > 0)
class SolverPool:
    """Worker processes that solve filtered obligations; thread-safe; never raises on solving."""

    def __init__(self, *, rlimit: int, workers: int, limits: WorkerLimits) -> None:
        """Configure the pool (workers start on first use or :meth:`warm`).

        Args:
            rlimit: z3's resource limit per check.
            workers: the number of worker processes.
            limits: memory, CPU and wall-clock caps of each worker.
        """
        self.rlimit = rlimit
        self.identity = solver_identity(rlimit)
        memory_mb = max(32, limits.memory_bytes // (1 << 20) - 96)
        self._pool = WorkerPool(
            WORKER_MODULE,
            size=workers,
            limits=limits,
            init={"rlimit": rlimit, "memory_mb": memory_mb},
            hello_check=self._hello_check,
        )

    def _hello_check(self, hello: dict[str, Any]) -> str:
        theirs = hello.get("solver")
        if not isinstance(theirs, dict) or _identity_fields(theirs) != _identity_fields(
            self.identity
        ):
            return f"worker solver identity `{theirs}` differs from `{self.identity}`"
        return ""

    @ensure(lambda result: result.get("status") in _STATUSES)
    def solve(self, compiled: CompiledObligation) -> dict[str, Any]:
        """Solve a filtered obligation in a worker.

        Args:
            compiled: the filter's output.

        Returns:
            The worker's reply, or ``{"status": "unknown", "code", "detail"}`` on any failure.
        """
        request = {
            "op": "solve",
            "script": compiled.solver_script(),
            "names": list(compiled.names),
            "rlimit": self.rlimit,
            "logic": compiled.logic,
        }
        return self._call(request)

    @require(lambda rlimit: rlimit > 0)
    @ensure(lambda result: result.get("status") in _STATUSES)
    def cross_check(self, compiled: CompiledObligation, rlimit: int) -> dict[str, Any]:
        """Ask cvc5 (in a worker) about the same normalized script.

        Args:
            compiled: the filter's output.
            rlimit: cvc5's per-check resource limit.

        Returns:
            cvc5's reply, or an ``unknown`` reply on any failure.
        """
        return self._call({"op": "cvc5", "script": compiled.smtlib_script(), "rlimit": rlimit})

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        call = self._pool.call(request)
        if not call.ok:
            return _failure_reply(call)
        reply = call.reply
        if reply.get("status") not in _STATUSES:
            return {"status": "unknown", "code": "worker crash", "detail": "malformed worker reply"}
        return reply

    def warm(self) -> None:
        """Start the workers now."""
        self._pool.warm()

    def pids(self) -> list[int]:
        """Live worker process ids (diagnostics, tests)."""
        return self._pool.pids()

    @ensure(lambda result: result.waiting >= 0 and result.spawned >= 0)
    def stats(self) -> PoolStats:
        """Callers waiting for a worker, and workers started in all (metrics)."""
        return self._pool.stats()

    @ensure(lambda self: self._pool.closed)
    def close(self) -> None:
        """Stop the workers; later solves answer ``gate closed``."""
        self._pool.close()
