"""The second solver: cvc5 re-checks PROVED verdicts of configured classes; disagreement denies."""

from __future__ import annotations

from typing import Any

import pytest
from proofgate_helpers import SAT_LIA, UNSAT_LIA, smt2

from sop_verified.core.obligations import Verdict
from sop_verified.core.proofgate import GateConfig, InMemoryVerdictStore, Z3ProofGate
from sop_verified.core.proofgate.derive import scope_containment


def test_cross_checked_proof_carries_cvc5_evidence() -> None:
    with Z3ProofGate(GateConfig(workers=1, cross_check=frozenset({"scope"}))) as gate:
        scoped = gate.check(scope_containment("artifacts/drac/a.json", "artifacts/drac/**"))
        other = gate.check(smt2(UNSAT_LIA, oid="misc:1"))
        refuted = gate.check(smt2(SAT_LIA, oid="scope:2"))
    assert scoped.verdict is Verdict.PROVED
    assert scoped.evidence["cross_check"]["verdict"] == "PROVED"
    assert scoped.evidence["cross_check"]["agreed"] is True
    assert scoped.evidence["cross_check"]["solver"]["name"] == "cvc5"
    assert "cross_check" not in other.evidence  # class not configured
    assert refuted.verdict is Verdict.REFUTED  # only PROVED verdicts are cross-checked


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ({"status": "sat"}, "integrity alarm: z3 answered unsat but cvc5 answered sat"),
        (
            {"status": "unknown", "code": "timeout", "detail": "slow"},
            "cross-check: cvc5 did not confirm",
        ),
        (
            {"status": "error", "code": "solver_parse", "detail": "?"},
            "cross-check: cvc5 did not confirm",
        ),
    ],
)
def test_cvc5_disagreement_or_failure_denies(
    reply: dict[str, Any], reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = InMemoryVerdictStore()
    alarms: list[str] = []
    with Z3ProofGate(
        GateConfig(workers=1, cross_check=frozenset({"*"})), store=store, on_alarm=alarms.append
    ) as gate:
        monkeypatch.setattr(gate._pool, "cross_check", lambda *_: reply)
        result = gate.check(smt2(UNSAT_LIA))
    assert result.verdict is Verdict.UNKNOWN
    assert result.reason.startswith(reason)
    assert store.digests() == []  # nothing is recorded without the confirmation
    assert bool(alarms) == (reply["status"] == "sat")
