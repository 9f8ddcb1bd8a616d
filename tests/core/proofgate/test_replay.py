"""Replay: recorded verdicts are re-checked, never rewritten; disagreements raise the alarm."""

from __future__ import annotations

from proofgate_helpers import SAT_LIA, UNSAT_LIA, smt2

from sop_verified.core.obligations import Verdict
from sop_verified.core.proofgate import (
    GateConfig,
    InMemoryVerdictStore,
    VerdictRecord,
    Z3ProofGate,
    obligation_digest,
)
from sop_verified.core.proofgate.replay import in_sample, replay


def _gate_with_records(store: InMemoryVerdictStore, alarms: list[str]) -> Z3ProofGate:
    return Z3ProofGate(GateConfig(workers=1), store=store, on_alarm=alarms.append)


def test_replay_of_honest_records_agrees() -> None:
    store, alarms = InMemoryVerdictStore(), list[str]()
    with _gate_with_records(store, alarms) as gate:
        for source in (UNSAT_LIA, SAT_LIA):
            gate.check(smt2(source))
        report = replay(gate)
    assert report.ok and report.total == 2 and report.checked == 2 and report.agreed == 2
    assert alarms == []


def test_replay_finds_a_planted_verdict_and_leaves_it_in_place() -> None:
    store, alarms = InMemoryVerdictStore(), list[str]()
    digest = obligation_digest("smt2", SAT_LIA)
    planted = VerdictRecord(
        "smt2", SAT_LIA, Verdict.PROVED, "proved", {"unsat_core": []}, {}
    ).to_bytes()
    store.put_once(digest, planted)
    with _gate_with_records(store, alarms) as gate:
        gate.check(smt2(UNSAT_LIA))
        report = replay(gate, 100.0)
    assert not report.ok
    (found,) = report.disagreements
    assert (found.digest, found.recorded, found.rechecked) == (digest, "PROVED", "REFUTED")
    assert store.get(digest) == planted
    assert len(alarms) == 1 and alarms[0].startswith("replay: recorded PROVED")


def test_replay_flags_records_that_are_not_about_their_digest() -> None:
    store, alarms = InMemoryVerdictStore(), list[str]()
    store.put_once(
        obligation_digest("smt2", SAT_LIA),
        VerdictRecord("smt2", UNSAT_LIA, Verdict.PROVED).to_bytes(),
    )
    with _gate_with_records(store, alarms) as gate:
        report = replay(gate)
    assert len(report.disagreements) == 1 and "is about" in report.disagreements[0].reason


def test_replay_sample_is_deterministic_and_proportional() -> None:
    digests = [obligation_digest("smt2", f"(assert {i})") for i in range(400)]
    picked = [d for d in digests if in_sample(d, 25.0)]
    assert picked == [d for d in digests if in_sample(d, 25.0)]
    assert 60 <= len(picked) <= 140
    assert not any(in_sample(d, 0.0) for d in digests)
    assert all(in_sample(d, 100.0) for d in digests)


def test_replay_with_zero_sample_checks_nothing() -> None:
    store, alarms = InMemoryVerdictStore(), list[str]()
    with _gate_with_records(store, alarms) as gate:
        gate.check(smt2(UNSAT_LIA))
        report = replay(gate, 0.0)
    assert (report.total, report.checked) == (1, 0)
