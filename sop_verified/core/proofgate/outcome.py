"""From filter errors and solver replies to verdicts, reasons and evidence.

Only an ``unsat`` answer becomes PROVED. Every reason starts with a stable
code (``resource limit``, ``memory``, ``timeout``, ``cpu limit``,
``worker crash``, ``solver unknown``, ``integrity alarm``, ...) followed by
``:`` and the detail.

``storable`` marks the definitive answers (PROVED, REFUTED): facts about the
obligation, recorded forever (INV-3). ``memoizable`` marks answers that are
a function of the obligation and this gate's configuration (REJECTED, and
UNKNOWN when the rlimit ran out or the solver gave up): they are kept in
process, so a resubmission does not burn the budget again, but never
recorded, so a larger rlimit or a newer solver can still decide later. A
timeout, a crash or memory exhaustion depend on the machine and are neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sop_verified.core.contracts import ensure, require
from sop_verified.core.obligations import Verdict
from sop_verified.core.proofgate.store import CrossCheck
from sop_verified.errors import ObligationError

__all__ = ["DETERMINISTIC_UNKNOWN", "SolverOutcome", "from_reply", "rejected", "unknown"]

DETERMINISTIC_UNKNOWN = frozenset({"resource limit", "solver unknown"})


@dataclass(frozen=True, slots=True)
class SolverOutcome:
    """The solver's verdict before the gate records it (the gate answers a ``VerdictResult``).

    ``cross_check`` is cvc5's confirmation, set only on a PROVED that cvc5 also proved.
    """

    verdict: Verdict
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)
    storable: bool = False
    memoizable: bool = False
    cross_check: CrossCheck | None = None


@require(lambda code: code != "")
@ensure(lambda result: result.verdict is Verdict.UNKNOWN)
def unknown(code: str, detail: str) -> SolverOutcome:
    """An UNKNOWN outcome with its reason code (never recorded; memoized when deterministic)."""
    return SolverOutcome(
        Verdict.UNKNOWN,
        f"{code}: {detail}" if detail else code,
        {"code": code, "detail": detail},
        memoizable=code in DETERMINISTIC_UNKNOWN,
    )


@ensure(lambda result: result.verdict is Verdict.REJECTED)
def rejected(exc: ObligationError) -> SolverOutcome:
    """The REJECTED outcome for a filter error: what, where and what is accepted."""
    evidence = {"code": exc.code, "line": exc.line, "where": exc.where, "accepted": exc.accepted}
    return SolverOutcome(Verdict.REJECTED, f"{exc.code}: {exc}", evidence, memoizable=True)


@ensure(
    lambda reply, result: result.verdict is not Verdict.PROVED or reply.get("status") == "unsat"
)
def from_reply(reply: dict[str, Any], rlimit: int) -> SolverOutcome:
    """Map a worker reply to an outcome (only ``unsat`` is PROVED).

    Args:
        reply: the solver pool's reply.
        rlimit: the resource limit the check ran under (for the reason).

    Returns:
        The outcome.
    """
    status = reply.get("status")
    if status == "unsat":  # spec: INV-1 (only an unsat answer proves)
        core = [str(n) for n in reply.get("core", [])]
        return SolverOutcome(
            Verdict.PROVED, "proved: the assertions are unsatisfiable", {"unsat_core": core}, True
        )
    if status == "sat":
        model = reply.get("model") or {}
        evidence = {
            "model": model.get("values", {}),
            "truncated": bool(model.get("truncated", False)),
        }
        return SolverOutcome(
            Verdict.REFUTED,
            "refuted: the assertions are satisfiable (counterexample in evidence)",
            evidence,
            True,
        )
    code = str(reply.get("code", "internal error"))
    detail = str(reply.get("detail", ""))
    if status == "error" and code == "solver_parse":
        exc = ObligationError(f"the solver rejected the filtered script: {detail}", code="solver")
        evidence = {"code": "solver", "line": None, "detail": detail}
        return SolverOutcome(Verdict.REJECTED, f"solver: {exc}", evidence, memoizable=True)
    if code == "resource limit":
        detail = f"rlimit {rlimit} exhausted ({detail})"
    if status == "error":
        code = "internal error"
    return unknown(code, detail)  # spec: INV-2
