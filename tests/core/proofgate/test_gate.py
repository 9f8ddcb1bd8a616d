"""The gate: only unsat proves (INV-1), failure is UNKNOWN (INV-2), records never change (INV-3)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from proofgate_helpers import CORPUS, SAT_LIA, UNSAT_LIA, smt2

from sop_verified.core.obligations import ProofGate, Verdict
from sop_verified.core.proofgate import (
    GateConfig,
    InMemoryVerdictStore,
    VerdictRecord,
    Z3ProofGate,
    obligation_digest,
)
from sop_verified.core.proofgate.outcome import SolverOutcome, from_reply
from sop_verified.errors import StorageError
from sop_verified.tools.canonical import canonical_json


class SpyStore(InMemoryVerdictStore):
    """Counts calls; optionally fails."""

    def __init__(self, *, fail_get: bool = False, fail_put: bool = False) -> None:
        super().__init__()
        self.gets = 0
        self.puts = 0
        self.fail_get = fail_get
        self.fail_put = fail_put

    def get(self, digest: str) -> bytes | None:
        self.gets += 1
        if self.fail_get:
            raise StorageError("disk on fire")
        return super().get(digest)

    def put_once(self, digest: str, record: bytes) -> bytes:
        self.puts += 1
        if self.fail_put:
            raise StorageError("disk on fire")
        return super().put_once(digest, record)


def test_gate_satisfies_the_kernel_protocol(shared_gate: Z3ProofGate) -> None:
    gate: ProofGate = shared_gate
    assert gate.check(smt2(UNSAT_LIA)).verdict is Verdict.PROVED


def test_unsat_is_proved_with_its_unsat_core(shared_gate: Z3ProofGate) -> None:
    source = (
        "(set-logic QF_LIA)(declare-const x Int)(declare-const y Int)"
        "(assert (! (> x 1) :named big))(assert (! (< x 0) :named negative))"
        "(assert (! (= y 3) :named irrelevant))(check-sat)"
    )
    result = shared_gate.check(smt2(source))
    assert result.verdict is Verdict.PROVED
    assert result.evidence["unsat_core"] == ["big", "negative"]
    assert result.digest == obligation_digest("smt2", source)


def test_sat_is_refuted_with_a_model(shared_gate: Z3ProofGate) -> None:
    result = shared_gate.check(smt2(SAT_LIA))
    assert result.verdict is Verdict.REFUTED
    assert result.evidence["model"] == {"x": "2"}
    assert "satisfiable" in result.reason


def test_definitions_do_not_leak_into_later_obligations(shared_gate: Z3ProofGate) -> None:
    shared_gate.check(
        smt2(
            "(set-logic QF_LIA)(define-fun c () Int 5)(define-fun leak ((a Int)) Int a)"
            "(assert (> c 1))"
        )
    )
    result = shared_gate.check(smt2("(set-logic QF_LIA)(declare-const c Int)(assert (= c 7))"))
    assert result.verdict is Verdict.REFUTED
    assert result.evidence["model"] == {"c": "7"}


def test_definition_capture_is_impossible(shared_gate: Z3ProofGate) -> None:
    source = "(set-logic LIA)(declare-const c Int)(define-fun g () Int c)"
    source += "(assert (forall ((c Int)) (= g c)))"
    assert shared_gate.check(smt2(source)).verdict is Verdict.PROVED  # forall c'. c = c' is false


def test_only_an_unsat_reply_maps_to_proved() -> None:
    replies: list[dict[str, Any]] = [
        {"status": "sat", "model": {"values": {}}},
        {"status": "unknown", "code": "resource limit", "detail": "canceled"},
        {"status": "unknown", "code": "solver unknown", "detail": "incomplete quantifiers"},
        {"status": "error", "code": "solver_parse", "detail": "bad"},
        {"status": "error", "code": "internal", "detail": "?"},
        {"status": "UNSAT"},
        {},
    ]
    for reply in replies:
        assert from_reply(reply, 10).verdict is not Verdict.PROVED
    assert from_reply({"status": "unsat", "core": []}, 10).verdict is Verdict.PROVED


def test_resource_limit_is_unknown_with_its_reason() -> None:
    with Z3ProofGate(GateConfig(workers=1, rlimit=1_000)) as gate:
        source = "(set-logic QF_BV)(declare-const a (_ BitVec 32))(declare-const b (_ BitVec 32))"
        source += "(assert (= (bvmul a b) #x7fffffff))"
        source += "(assert (bvugt a #x00000001))(assert (bvugt b #x00000001))"
        result = gate.check(smt2(source))
    assert result.verdict is Verdict.UNKNOWN
    assert result.reason.startswith("resource limit: rlimit 1000 exhausted")


def test_rlimit_unknown_is_memoized_but_never_recorded() -> None:
    store = SpyStore()
    source = (CORPUS / "qf_slia_narrowing.smt2").read_text()
    with Z3ProofGate(GateConfig(workers=1, rlimit=10), store=store) as gate:
        first = gate.check(smt2(source))
        gate.close()  # the repeat must come from the memo: no worker is left to ask
        again = gate.check(smt2(source))
    assert first.verdict is Verdict.UNKNOWN and first.reason.startswith("resource limit")
    assert again == first
    assert store.digests() == []
    with Z3ProofGate(GateConfig(workers=1), store=store) as gate:  # a larger budget decides
        assert gate.check(smt2(source)).verdict is Verdict.PROVED
    assert len(store.digests()) == 1


def test_rejected_obligation_says_what_and_where(shared_gate: Z3ProofGate) -> None:
    result = shared_gate.check(smt2("(set-logic QF_LIA)\n(set-option :verbose 10)\n"))
    assert result.verdict is Verdict.REJECTED
    assert result.evidence["code"] == "command" and result.evidence["line"] == 2
    assert "`set-option`" in result.reason


def test_unknown_format_is_rejected(shared_gate: Z3ProofGate) -> None:
    obligation = smt2(UNSAT_LIA).model_copy(update={"format": "lisp"})
    assert shared_gate.check(obligation).verdict is Verdict.REJECTED


def test_solver_type_errors_after_the_filter_are_rejected(shared_gate: Z3ProofGate) -> None:
    result = shared_gate.check(smt2("(set-logic QF_LIA)(declare-const x Int)(assert (+ x 1))"))
    assert result.verdict is Verdict.REJECTED
    assert result.reason.startswith("solver:")


def test_repeat_is_served_from_the_record_without_solving() -> None:
    store = SpyStore()
    with Z3ProofGate(GateConfig(workers=1), store=store) as gate:
        first = gate.check(smt2(UNSAT_LIA))
        pids = gate.worker_pids()
        second = gate.check(smt2(UNSAT_LIA, oid="other:1"))
    assert first == second
    assert store.puts == 1 and store.gets == 1  # the second answer came from the in-process memo
    assert pids


def test_record_survives_a_new_gate_on_the_same_store() -> None:
    store = SpyStore()
    with Z3ProofGate(GateConfig(workers=1), store=store) as gate:
        first = gate.check(smt2(SAT_LIA))
    with Z3ProofGate(GateConfig(workers=1), store=store) as gate:
        gate.close()  # a closed gate can still answer from the record, and only from it
        again = gate.check(smt2(SAT_LIA))
        fresh = gate.check(smt2(UNSAT_LIA))
    assert again == first
    assert fresh.verdict is Verdict.UNKNOWN and fresh.reason.startswith("gate closed")
    record = VerdictRecord.from_bytes(store.get(first.digest) or b"", digest=first.digest)
    assert record.solver["name"] == "z3" and record.solver["version"]


def test_disagreeing_recheck_raises_the_alarm_and_keeps_the_record() -> None:
    store = InMemoryVerdictStore()
    alarms: list[str] = []
    with Z3ProofGate(GateConfig(workers=1), store=store, on_alarm=alarms.append) as gate:
        first = gate.check(smt2(UNSAT_LIA))
        recorded = store.get(first.digest)
        # a re-check that lands elsewhere (a solver bug, a tampered worker, a race)
        flipped = SolverOutcome(Verdict.REFUTED, "refuted: planted", {"model": {}}, storable=True)
        result = gate._record(smt2(UNSAT_LIA), first.digest, flipped, needs=False)
    assert first.verdict is Verdict.PROVED
    assert result.verdict is Verdict.UNKNOWN
    assert (
        result.reason
        == f"integrity alarm: recorded PROVED for `{first.digest}`, a re-check gave REFUTED"
    )
    assert store.get(first.digest) == recorded
    assert len(alarms) == 1


def test_conflicting_record_in_the_store_alarms_and_denies() -> None:
    store = InMemoryVerdictStore()
    digest = obligation_digest("smt2", UNSAT_LIA)
    planted = VerdictRecord(
        "smt2", UNSAT_LIA, Verdict.REFUTED, "planted", {"model": {}}, {}
    ).to_bytes()
    store.put_once(digest, planted)
    alarms: list[str] = []
    with Z3ProofGate(
        GateConfig(workers=1, memo_size=0), store=store, on_alarm=alarms.append
    ) as gate:
        outcome = gate._decide("smt2", UNSAT_LIA, cross_check=False)
        result = gate._record(smt2(UNSAT_LIA), digest, outcome, needs=False)
    assert result.verdict is Verdict.UNKNOWN
    assert result.reason.startswith("integrity alarm: recorded REFUTED")
    assert alarms == [result.reason.removeprefix("integrity alarm: ")]
    assert store.get(digest) == planted


def test_record_moved_to_another_digest_is_an_integrity_alarm() -> None:
    store = InMemoryVerdictStore()
    forged = VerdictRecord("smt2", UNSAT_LIA, Verdict.PROVED, "proved", {"unsat_core": []}, {})
    digest = obligation_digest("smt2", SAT_LIA)
    store.put_once(digest, forged.to_bytes())  # claims SAT_LIA is proved
    alarms: list[str] = []
    with Z3ProofGate(GateConfig(workers=1), store=store, on_alarm=alarms.append) as gate:
        result = gate.check(smt2(SAT_LIA))
    assert result.verdict is Verdict.UNKNOWN and "integrity alarm" in result.reason
    assert len(alarms) == 1 and "is about" in alarms[0]


def test_unreadable_record_is_an_integrity_alarm() -> None:
    store = InMemoryVerdictStore()
    store.put_once(obligation_digest("smt2", UNSAT_LIA), b"{not json")
    with Z3ProofGate(GateConfig(workers=1), store=store) as gate:
        result = gate.check(smt2(UNSAT_LIA))
        assert gate.alarms
    assert result.verdict is Verdict.UNKNOWN and "integrity alarm" in result.reason


@pytest.mark.parametrize(("fail_get", "fail_put"), [(True, False), (False, True)])
def test_store_failure_is_unknown_never_proved(fail_get: bool, fail_put: bool) -> None:
    store = SpyStore(fail_get=fail_get, fail_put=fail_put)
    with Z3ProofGate(GateConfig(workers=1), store=store) as gate:
        result = gate.check(smt2(UNSAT_LIA))
        again = gate.check(smt2(UNSAT_LIA))
    assert result.verdict is Verdict.UNKNOWN and result.reason.startswith("verdict store failed")
    assert again.verdict is Verdict.UNKNOWN  # a failure is never cached as an answer


def test_internal_exception_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    with Z3ProofGate(GateConfig(workers=1)) as gate:

        def boom(*_: object, **__: object) -> None:
            raise RuntimeError("bug")

        monkeypatch.setattr(gate, "_decide", boom)
        result = gate.check(smt2(UNSAT_LIA))
    assert result.verdict is Verdict.UNKNOWN and result.reason == "internal error: RuntimeError"


def test_non_obligation_input_is_unknown_not_an_exception(shared_gate: Z3ProofGate) -> None:
    result = shared_gate.check(None)  # type: ignore[arg-type]  # hostile caller
    assert result.verdict is Verdict.UNKNOWN


def test_alarm_callback_failure_does_not_break_the_gate() -> None:
    store = InMemoryVerdictStore()
    store.put_once(obligation_digest("smt2", UNSAT_LIA), b"[]")

    def bad_callback(reason: str) -> None:
        raise RuntimeError(reason)

    with Z3ProofGate(GateConfig(workers=1), store=store, on_alarm=bad_callback) as gate:
        assert gate.check(smt2(UNSAT_LIA)).verdict is Verdict.UNKNOWN


def test_concurrent_checks_from_threads_agree(shared_gate: Z3ProofGate) -> None:
    sources = [
        f"(set-logic QF_LIA)(declare-const x Int)(assert (> x {i}))(assert (< x {i + (i % 3)}))"
        for i in range(24)
    ]
    results: dict[int, Verdict] = {}

    def work(i: int) -> None:
        results[i] = shared_gate.check(smt2(sources[i])).verdict

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(sources))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for i in range(len(sources)):
        expected = Verdict.PROVED if i % 3 in (0, 1) else Verdict.REFUTED
        assert results[i] is expected, i


def test_record_bytes_are_canonical_json() -> None:
    record = VerdictRecord(
        "smt2", UNSAT_LIA, Verdict.PROVED, "r", {"unsat_core": ["b", "a"]}, {"v": 1}
    )
    data = record.to_bytes()
    assert data == canonical_json(
        {
            "format": "smt2",
            "source": UNSAT_LIA,
            "verdict": "PROVED",
            "reason": "r",
            "evidence": {"unsat_core": ["b", "a"]},
            "solver": {"v": 1},
        }
    )
    assert VerdictRecord.from_bytes(data, digest=record.digest) == record


def test_digest_is_rfc8785_of_format_and_source() -> None:
    for source in (UNSAT_LIA, 'a "quoted" \\ \n\t\x01 é \u2028 😀', ""):
        expected = (
            "sha256:"
            + __import__("hashlib")
            .sha256(canonical_json({"format": "smt2", "source": source}))
            .hexdigest()
        )
        assert obligation_digest("smt2", source) == expected
    assert obligation_digest("smt2", "\udcff").startswith("sha256:")
    assert obligation_digest("smt2", "a") != obligation_digest("json", "a")
