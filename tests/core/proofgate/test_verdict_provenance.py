"""A verdict says how it was reached; a cross-check class takes only a PROVED cvc5 confirmed.

The attack these tests replay: verdicts are kept by content, the cross-check
is chosen by the obligation's id, so the same text submitted first under a
class without the cross-check was recorded PROVED by z3 alone and then
reused, as it stood, by a class configured to need cvc5 (issue 13, item 5).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cvc5
import orjson
import pytest
from proofgate_helpers import UNSAT_LIA, smt2

from sop_verified.core.obligations import Verdict
from sop_verified.core.proofgate import GateConfig, InMemoryVerdictStore, Z3ProofGate
from sop_verified.core.proofgate.replay import replay
from sop_verified.core.proofgate.store import (
    CrossCheck,
    VerdictRecord,
    cross_checked_key,
    obligation_digest,
)
from sop_verified.errors import IntegrityError
from sop_verified.tools.canonical import canonical_json

DIGEST = obligation_digest("smt2", UNSAT_LIA)
CONFIRMED_KEY = cross_checked_key(DIGEST)
CVC5 = {"name": "cvc5", "version": "1.0-test", "rlimit": 1, "params": {}}
Z3 = {"name": "z3", "version": "4.0-test", "rlimit": 1}

# what the gate wrote before records said how they were reached: no `cross_check` field
# (the cvc5 answer then lived inside `evidence`, which proves nothing about the record)
OLD_RECORD = canonical_json(
    {
        "format": "smt2",
        "source": UNSAT_LIA,
        "verdict": "PROVED",
        "reason": "proved: the assertions are unsatisfiable",
        "evidence": {"unsat_core": [], "cross_check": {"solver": CVC5, "answer": "unsat"}},
        "solver": Z3,
    }
)


def _gate(store: InMemoryVerdictStore, alarms: list[str], memo_size: int = 4096) -> Z3ProofGate:
    config = GateConfig(workers=1, cross_check=frozenset({"scope"}), memo_size=memo_size)
    return Z3ProofGate(config, store=store, on_alarm=alarms.append)


def _counting(reply: dict[str, Any], calls: list[int]) -> Callable[..., dict[str, Any]]:
    def cross_check(*_: object) -> dict[str, Any]:
        calls.append(1)
        return reply

    return cross_check


def test_record_says_which_solvers_ran_and_what_the_cross_check_found() -> None:
    store = InMemoryVerdictStore()
    other = UNSAT_LIA.replace("(< x 0)", "(< x 1)")
    with _gate(store, []) as gate:
        assert gate.check(smt2(UNSAT_LIA, oid="scope:1")).verdict is Verdict.PROVED
        assert gate.check(smt2(other, oid="misc:1")).verdict is Verdict.PROVED
        z3_version = gate.solver_identity["version"]
    checked = store.get(DIGEST)
    plain = store.get(obligation_digest("smt2", other))
    assert checked is not None and plain is not None
    assert checked == canonical_json(orjson.loads(checked))  # still canonical JSON
    record = VerdictRecord.from_bytes(checked, digest=DIGEST)
    assert record.solvers == (("z3", z3_version), ("cvc5", cvc5.__version__))
    assert record.cross_check is not None
    assert (record.cross_check.verdict, record.cross_check.agreed) == (Verdict.PROVED, True)
    assert record.cross_checked
    z3_only = VerdictRecord.from_bytes(plain, digest=obligation_digest("smt2", other))
    assert z3_only.solvers == (("z3", z3_version),)
    assert z3_only.cross_check is None and b"cross_check" not in plain


def test_record_written_before_the_field_reads_as_z3_only() -> None:
    record = VerdictRecord.from_bytes(OLD_RECORD, digest=DIGEST)
    assert record.cross_check is None
    assert not record.cross_checked  # the cvc5 answer inside `evidence` does not count
    assert record.solvers == (("z3", "4.0-test"),)
    assert record.to_bytes() == OLD_RECORD  # absent is the one encoding of "no cross-check"


@pytest.mark.parametrize(
    ("field", "message"),
    [
        (None, "unreadable: ValueError"),  # explicit null: not the canonical encoding
        ({"solver": CVC5, "verdict": "PROVED"}, "unreadable: ValueError"),
        ({"solver": {"name": "cvc5"}, "verdict": "PROVED", "agreed": True}, "unreadable"),
        ({"solver": CVC5, "verdict": "PROVED", "agreed": "yes"}, "unreadable: ValueError"),
    ],
)
def test_malformed_cross_check_evidence_is_refused(field: Any, message: str) -> None:
    raw = {**orjson.loads(OLD_RECORD), "cross_check": field}
    with pytest.raises(IntegrityError, match=message):
        VerdictRecord.from_bytes(canonical_json(raw), digest=DIGEST)


@pytest.mark.parametrize("memo_size", [4096, 0], ids=["memo", "store"])
@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ({"status": "sat"}, "integrity alarm: z3 answered unsat but cvc5 answered sat"),
        (
            {"status": "unknown", "code": "timeout", "detail": "slow"},
            "cross-check: cvc5 did not confirm: timeout slow",
        ),
        ({"status": "unsat"}, "cross-check: cvc5 answered unsat without its identity"),
    ],
)
def test_proved_recorded_without_cvc5_is_not_reused_by_a_class_that_needs_it(
    reply: dict[str, Any], reason: str, memo_size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = InMemoryVerdictStore()
    alarms: list[str] = []
    calls: list[int] = []
    with _gate(store, alarms, memo_size) as gate:
        monkeypatch.setattr(gate._pool, "cross_check", _counting(reply, calls))
        first = gate.check(smt2(UNSAT_LIA, oid="misc:1"))  # a class without the cross-check
        recorded = store.get(DIGEST)
        second = gate.check(smt2(UNSAT_LIA, oid="scope:1"))  # the same text, a class with it
        again = gate.check(smt2(UNSAT_LIA, oid="misc:2"))
    assert first.verdict is Verdict.PROVED and calls == [1]
    assert second.verdict is Verdict.UNKNOWN  # DENY
    assert second.reason.startswith(reason)
    assert bool(alarms) == (reply["status"] == "sat")
    assert store.get(DIGEST) == recorded  # spec: INV-3 — the z3 record is as it was
    assert store.digests() == [DIGEST]  # and no confirmation was recorded
    assert again.verdict is Verdict.PROVED  # the class without the cross-check is unaffected


def test_cross_check_run_later_is_recorded_apart_and_read_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = InMemoryVerdictStore()
    with _gate(store, []) as gate:
        assert "cross_check" not in gate.check(smt2(UNSAT_LIA, oid="misc:1")).evidence
        recorded = store.get(DIGEST)
        confirmed = gate.check(smt2(UNSAT_LIA, oid="scope:1"))
    assert confirmed.verdict is Verdict.PROVED
    assert confirmed.evidence["cross_check"]["solver"]["version"] == cvc5.__version__
    assert store.get(DIGEST) == recorded  # spec: INV-3
    raw = store.get(CONFIRMED_KEY)
    assert raw is not None
    record = VerdictRecord.from_bytes(raw, digest=CONFIRMED_KEY)
    assert record.cross_checked and record.digest == DIGEST
    assert [s[0] for s in record.solvers] == ["z3", "cvc5"]
    calls: list[int] = []
    with _gate(store, [], memo_size=0) as later:  # a reboot: cvc5 is not asked again
        monkeypatch.setattr(later._pool, "cross_check", _counting({"status": "sat"}, calls))
        assert later.check(smt2(UNSAT_LIA, oid="scope:2")).verdict is Verdict.PROVED
    assert calls == []


@pytest.mark.parametrize(
    "cross_check",
    [
        None,
        CrossCheck(CVC5, Verdict.REFUTED, agreed=False),
        CrossCheck(CVC5, Verdict.PROVED, agreed=False),
    ],
    ids=["none", "cvc5-refuted", "not-agreed"],
)
def test_confirmation_without_an_agreeing_cvc5_proved_is_an_integrity_alarm(
    cross_check: CrossCheck | None,
) -> None:
    store = InMemoryVerdictStore()
    store.put_once(DIGEST, OLD_RECORD)
    planted = VerdictRecord.from_bytes(OLD_RECORD, digest=DIGEST)
    store.put_once(
        CONFIRMED_KEY,
        VerdictRecord(
            planted.format,
            planted.source,
            planted.verdict,
            planted.reason,
            planted.evidence,
            planted.solver,
            cross_check,
        ).to_bytes(),
    )
    alarms: list[str] = []
    with _gate(store, alarms) as gate:
        result = gate.check(smt2(UNSAT_LIA, oid="scope:1"))
    assert result.verdict is Verdict.UNKNOWN
    assert result.reason.startswith(
        f"integrity alarm: the cross-checked verdict record for `{DIGEST}` does not carry "
        "an agreeing cvc5 PROVED"
    )
    assert len(alarms) == 1


def test_old_record_claiming_cvc5_in_its_evidence_is_cross_checked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = InMemoryVerdictStore()
    store.put_once(DIGEST, OLD_RECORD)
    calls: list[int] = []
    with _gate(store, []) as gate:
        monkeypatch.setattr(gate._pool, "cross_check", _counting({"status": "unknown"}, calls))
        assert gate.check(smt2(UNSAT_LIA, oid="misc:1")).verdict is Verdict.PROVED
        assert gate.check(smt2(UNSAT_LIA, oid="scope:1")).verdict is Verdict.UNKNOWN
    assert calls == [1]


class _RacingStore(InMemoryVerdictStore):
    """Answers ``get`` before another ask (a class without cvc5) recorded the same text."""

    def get(self, digest: str) -> bytes | None:
        return None


def test_a_z3_only_record_that_wins_the_race_is_cross_checked_before_use() -> None:
    store = _RacingStore()
    store.put_once(DIGEST, OLD_RECORD)
    with _gate(store, [], memo_size=0) as gate:
        result = gate.check(smt2(UNSAT_LIA, oid="scope:1"))
    assert result.verdict is Verdict.PROVED
    assert result.evidence["cross_check"]["agreed"] is True
    assert store.digests() == sorted([DIGEST, CONFIRMED_KEY])


def test_replay_rechecks_a_confirmation_with_both_solvers(monkeypatch: pytest.MonkeyPatch) -> None:
    store = InMemoryVerdictStore()
    calls: list[int] = []
    with _gate(store, []) as gate:
        gate.check(smt2(UNSAT_LIA, oid="misc:1"))
        gate.check(smt2(UNSAT_LIA, oid="scope:1"))
        real = gate._pool.cross_check

        def counted(*args: Any) -> dict[str, Any]:
            calls.append(1)
            return real(*args)

        monkeypatch.setattr(gate._pool, "cross_check", counted)
        report = replay(gate)
    assert (report.total, report.agreed, report.ok) == (2, 2, True)
    assert calls == [1]  # the confirmation, not the z3-only record
