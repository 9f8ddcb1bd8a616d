"""Proof obligations and verdicts: the seam between the kernel and the proof gate.

Only PROVED lets anything through (INV-1). Until a real gate is wired, every
obligation is UNKNOWN, so any request that carries one is denied.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol

from sop_verified.core.contracts import ensure
from sop_verified.core.request import Obligation
from sop_verified.tools.canonical import digest

__all__ = ["ProofGate", "UnwiredProofGate", "Verdict", "VerdictResult"]


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


class ProofGate(Protocol):
    """Decides obligations; implementations must never raise past ``check``."""

    def check(self, obligation: Obligation) -> VerdictResult:
        """Return the verdict for ``obligation``."""


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
