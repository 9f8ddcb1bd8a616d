"""What a check run produces: one :class:`Result` per (invariant, transition), a report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["CheckReport", "Counterexample", "Result", "Verdict"]

Verdict = Literal["PROVED", "FAILED", "UNKNOWN"]


@dataclass(frozen=True)
class Counterexample:
    """Why a check failed: the broken clauses, the state before, the step, the state after.

    For an inductive check the pre-state satisfies every invariant but the step
    breaks one (a counterexample to induction). ``trace``, when found, is a run
    from an initial state that reaches the failure (bounded model checking),
    so the failure is real and not only a gap in the invariants.
    """

    inv: str
    name: str
    transition: str
    method: str
    broken: tuple[str, ...]
    before: dict[str, Any] | None
    inputs: dict[str, Any]
    after: dict[str, Any]
    trace: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "inv": self.inv,
            "name": self.name,
            "transition": self.transition,
            "method": self.method,
            "broken": list(self.broken),
            "before": self.before,
            "step": {"transition": self.transition, "inputs": self.inputs},
            "after": self.after,
            "trace": list(self.trace),
        }


@dataclass(frozen=True)
class Result:
    """The verdict of one check."""

    inv: str
    name: str
    transition: str
    method: str
    verdict: Verdict
    seconds: float
    counterexample: Counterexample | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        """Only PROVED is a pass; UNKNOWN counts as a failure."""
        return self.verdict == "PROVED"

    def to_dict(self, *, with_time: bool = True) -> dict[str, Any]:
        """JSON-ready form; the counterexample only on failures."""
        out: dict[str, Any] = {
            "inv": self.inv,
            "transition": self.transition,
            "method": self.method,
            "verdict": self.verdict,
        }
        if with_time:
            out["seconds"] = round(self.seconds, 4)
        if self.counterexample is not None:
            out["counterexample"] = self.counterexample.to_dict()
        return out


@dataclass(frozen=True)
class CheckReport:
    """All results of one run of the checks."""

    results: list[Result]
    seconds: float
    z3_version: str
    mutations: frozenset[str] = frozenset()
    universe: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True only if there was at least one check and every check PROVED."""
        return bool(self.results) and all(r.ok for r in self.results)

    @property
    def failures(self) -> list[Result]:
        """The results that did not prove."""
        return [r for r in self.results if not r.ok]

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``sop spec check --json``."""
        return {
            "ok": self.ok,
            "results": [r.to_dict() for r in self.results],
        }
