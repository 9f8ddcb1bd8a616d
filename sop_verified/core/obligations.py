"""Proof obligations and verdicts: the seam between the kernel and the proof gate.

Only PROVED lets anything through (INV-1). Until a real gate is wired, every
obligation is UNKNOWN, so any request that carries one is denied.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, assert_never

from sop_verified.core.contracts import ensure
from sop_verified.core.request import Obligation
from sop_verified.tools.canonical import digest

__all__ = ["ProofGate", "UnwiredProofGate", "Verdict", "VerdictResult", "denial_code"]


class Verdict(enum.StrEnum):
    """The four verdicts of the proof gate."""

    PROVED = "PROVED"
    REFUTED = "REFUTED"
    UNKNOWN = "UNKNOWN"
    REJECTED = "REJECTED"


@dataclass(frozen=True, slots=True)
class VerdictResult:
    """A verdict with the obligation digest, the reason and the evidence."""

    verdict: Verdict
    digest: str
    reason: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)


@ensure(lambda verdict, result: (result is None) == (verdict is Verdict.PROVED), "INV-1")
def denial_code(verdict: Verdict) -> str | None:
    """The kernel's reason code for an obligation with ``verdict``; None for PROVED (INV-1).

    Matches every verdict: a new one makes ``mypy --strict`` ask what it means here.
    """
    match verdict:
        case Verdict.PROVED:
            return None
        case Verdict.REFUTED:
            return "obligation_refuted"
        case Verdict.UNKNOWN:
            return "obligation_unknown"
        case Verdict.REJECTED:
            return "obligation_rejected"
        case _:
            assert_never(verdict)


class ProofGate(Protocol):
    """Decides obligations; implementations must never raise past ``check`` or ``check_many``."""

    def check(self, obligation: Obligation) -> VerdictResult:
        """Return the verdict for ``obligation``."""

    def check_many(self, obligations: Sequence[Obligation]) -> list[VerdictResult]:
        """Return, per obligation and in order, what :meth:`check` returns for it."""


class UnwiredProofGate:
    """The gate before a solver is wired: every obligation is UNKNOWN (fail-closed)."""

    @ensure(lambda result: result.verdict is Verdict.UNKNOWN, "INV-1: never PROVED")
    def check(self, obligation: Obligation) -> VerdictResult:
        """Return UNKNOWN for every obligation."""
        return VerdictResult(
            Verdict.UNKNOWN,
            digest(obligation.model_dump()),
            reason="no proof gate is wired; every obligation is UNKNOWN until one is",
        )

    @ensure(lambda obligations, result: len(result) == len(obligations), "one per obligation")
    @ensure(lambda result: all(r.verdict is Verdict.UNKNOWN for r in result), "INV-1: never PROVED")
    def check_many(self, obligations: Sequence[Obligation]) -> list[VerdictResult]:
        """Return UNKNOWN for each obligation, in order."""
        return [self.check(ob) for ob in obligations]
