"""The kernel's decision path against fake ports: every stage can deny, only all-pass allows."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import pytest

import sop_verified.core.kernel as kernel_module
from sop_verified.core.decision_fields import WriteResult
from sop_verified.core.health import Health
from sop_verified.core.kernel import OpsKernel, _allow_is_complete, _linked_after_decision
from sop_verified.core.obligations import UnwiredProofGate, Verdict, VerdictResult
from sop_verified.core.request import (
    Decision,
    Obligation,
    Permission,
    Reason,
    Request,
    Stage,
    parse_request,
)
from sop_verified.errors import CapabilityError, StateMovedError, StorageError
from sop_verified.tools.canonical import canonical_json, digest
from sop_verified.tools.tlog_store import LinkedPart, Receipt


@dataclass
class FakeCap:
    id: str = "cap-1"


class FakeCaps:
    def __init__(self, error: CapabilityError | None = None) -> None:
        self.error = error

    def check(self, token: str, request: Request) -> FakeCap:
        if self.error:
            raise self.error
        return FakeCap()

    def check_many(self, pairs: Sequence[tuple[str, Request]]) -> list[FakeCap | CapabilityError]:
        """:meth:`check` per pair, the error returned in its place (as the registry does)."""
        out: list[FakeCap | CapabilityError] = []
        for token, request in pairs:
            try:
                out.append(self.check(token, request))
            except CapabilityError as exc:
                out.append(exc)
        return out


@dataclass
class FakePolicyOutcome:
    allowed: bool
    policy_ids: tuple[str, ...]
    code: str
    message: str

    def to_reason(self) -> Reason:
        return Reason(Stage.POLICY, self.code, self.message, policy_ids=self.policy_ids)


class CountingCaps(FakeCaps):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def check(self, token: str, request: Request) -> FakeCap:
        self.calls += 1
        return super().check(token, request)


class FakePolicy:
    digest = "sha256:00"

    def __init__(self, allowed: bool = True, boom: bool = False) -> None:
        self.allowed, self.boom = allowed, boom

    def evaluate(self, request: Request) -> FakePolicyOutcome:
        if self.boom:
            raise RuntimeError("policy blew up")
        if self.allowed:
            return FakePolicyOutcome(True, ("p1",), "permitted", "permitted by `p1`")
        return FakePolicyOutcome(False, ("f1",), "forbidden", "forbidden by `f1`")

    def evaluate_many(self, requests: Sequence[Request]) -> list[FakePolicyOutcome]:
        return [self.evaluate(r) for r in requests]


class ListLog:
    def __init__(self, fail: bool = False) -> None:
        self.entries: list[bytes] = []
        self.fail = fail

    def append(self, payload: bytes) -> int:
        if self.fail:
            raise StorageError("disk on fire")
        self.entries.append(payload)
        return len(self.entries) - 1

    def append_receipt(self, payload: bytes) -> Receipt:
        """:meth:`append`, the index wrapped in a receipt (whatever the index is)."""
        index = self.append(payload)
        return Receipt(index, hashlib.sha256(payload).digest(), len(self.entries))

    def append_parts(self, parts: Sequence[LinkedPart]) -> list[tuple[Receipt, Receipt | None]]:
        """Each part in order: its entry, then its linked entry built from the first's index."""
        out: list[tuple[Receipt, Receipt | None]] = []
        for part in parts:
            first = self.append_receipt(part.first)
            then = None if part.then is None else self.append_receipt(part.then(first.index))
            out.append((first, then))
        return out


class GateDouble:
    """A test gate: :meth:`check_many` is :meth:`check` per obligation."""

    def check(self, obligation: Obligation) -> VerdictResult:
        raise NotImplementedError

    def check_many(self, obligations: Sequence[Obligation]) -> list[VerdictResult]:
        return [self.check(ob) for ob in obligations]


class ProvingGate(GateDouble):
    def check(self, obligation: Obligation) -> VerdictResult:
        return VerdictResult(Verdict.PROVED, "sha256:ab")


def make(**kw: Any) -> tuple[OpsKernel, ListLog]:
    log = kw.pop("log", ListLog())
    policy = kw.pop("policy", FakePolicy())
    kernel = OpsKernel(
        capabilities=kw.pop("caps", FakeCaps()),
        policy=lambda: policy,
        proof_gate=kw.pop("gate", ProvingGate()),
        log=log,
        health=kw.pop("health", lambda: Health.READY),
        now=kw.pop("now", lambda: 1_700_000_000),
    )
    return kernel, log


REQ = {
    "request_id": "r-1",
    "principal": "drac",
    "action": "artifact.persist",
    "resource": "artifacts/drac/s1/out.bin",
    "capability": "tok",
    "context": {"size_bytes": 10},
}


def test_all_stages_pass_allows_and_logs_first() -> None:
    kernel, log = make()
    d = kernel.submit(REQ)
    assert d.effect is Permission.ALLOW
    assert d.log_index == 0
    assert b'"effect":"ALLOW"' in log.entries[0]
    assert d.capability_id == "cap-1"
    assert d.policy_ids == ("p1",)


@pytest.mark.parametrize("health", [Health.BOOTING, Health.DEGRADED, Health.FAILED])
def test_not_ready_denies_everything(health: Health) -> None:
    kernel, log = make(health=lambda: health)
    d = kernel.submit(REQ)
    assert d.effect is Permission.DENY
    assert (d.reasons[0].stage, d.reasons[0].code) == (Stage.HEALTH, "not_ready")
    assert d.reasons[0].message == f"SOP is `{health}`, not `READY`"
    assert len(log.entries) == 1  # denials are logged too


def test_no_active_policy_is_default_deny() -> None:
    log = ListLog()
    kernel = OpsKernel(
        capabilities=FakeCaps(),
        policy=lambda: None,
        proof_gate=ProvingGate(),
        log=log,
        health=lambda: Health.READY,
        now=lambda: 0,
    )
    d = kernel.submit(REQ)
    assert d.effect is Permission.DENY
    assert (d.reasons[0].stage, d.reasons[0].code) == (Stage.POLICY, "no_policy")
    assert d.reasons[0].message == "no policy set is active" and d.capability_id == "cap-1"


def test_capability_error_denies_with_its_code() -> None:
    err = CapabilityError("capability `c9` expired", code="expired", capability_id="c9")
    kernel, _ = make(caps=FakeCaps(err))
    d = kernel.submit(REQ)
    assert d.effect is Permission.DENY
    assert (d.reasons[0].stage, d.reasons[0].code, d.reasons[0].capability_id) == (
        Stage.CAPABILITY,
        "expired",
        "c9",
    )
    assert d.reasons[0].message == "capability `c9` expired"


def test_the_capability_is_checked_against_the_request_it_came_with() -> None:
    class BoundCaps(FakeCaps):
        def check(self, token: str, request: Request) -> FakeCap:
            if request.principal != "drac":
                raise CapabilityError("held by `drac`", code="wrong_principal")
            return FakeCap()

    kernel, _ = make(caps=BoundCaps())
    assert kernel.submit(REQ).allowed
    d = kernel.submit({**REQ, "principal": "emp"})
    assert (d.effect, d.reasons[0].code) == (Permission.DENY, "wrong_principal")


def test_policy_forbid_denies_naming_policy() -> None:
    kernel, _ = make(policy=FakePolicy(allowed=False))
    d = kernel.submit(REQ)
    assert d.effect is Permission.DENY
    assert d.reasons[0].policy_ids == ("f1",)


def test_policy_exception_is_deny() -> None:
    kernel, log = make(policy=FakePolicy(boom=True))
    d = kernel.submit(REQ)
    assert d.effect is Permission.DENY
    assert d.reasons[0].stage is Stage.INTERNAL
    assert "RuntimeError" in d.reasons[0].message
    assert "blew up" not in d.reasons[0].message  # no internals leak to the caller
    assert len(log.entries) == 1


def test_unwired_gate_denies_any_obligation() -> None:
    kernel, _ = make(gate=UnwiredProofGate())
    req = {**REQ, "obligations": [{"id": "o1", "format": "smt2", "source": "(assert false)"}]}
    d = kernel.submit(req)
    assert d.effect is Permission.DENY
    assert d.reasons[0].stage is Stage.OBLIGATION
    assert d.reasons[0].code == "obligation_unknown"
    assert d.reasons[0].obligation == "o1"


def test_refuted_obligation_denies_with_counterexample() -> None:
    class RefutingGate(GateDouble):
        def check(self, obligation: Obligation) -> VerdictResult:
            return VerdictResult(Verdict.REFUTED, "sha256:cd", "sat", {"model": {"x": 1}})

    kernel, _ = make(gate=RefutingGate())
    req = {**REQ, "obligations": [{"id": "o1", "format": "smt2", "source": "(assert true)"}]}
    d = kernel.submit(req)
    assert d.effect is Permission.DENY
    assert d.reasons[0].counterexample == {"x": 1}


def test_log_failure_turns_allow_into_deny() -> None:
    kernel, _ = make(log=ListLog(fail=True))
    d = kernel.submit(REQ)
    assert d.effect is Permission.DENY
    assert (d.reasons[-1].stage, d.reasons[-1].code) == (Stage.LOG, "log_append_failed")
    assert d.reasons[-1].message == "the decision could not be logged: disk on fire"
    assert len(d.reasons) == 1  # the ALLOW's reasons are not kept for a DENY
    assert (d.request_id, d.capability_id, d.policy_ids, d.log_index) == (
        "r-1",
        "cap-1",
        ("p1",),
        None,
    )


def test_log_failure_keeps_the_deny_reasons_and_hides_foreign_messages() -> None:
    class BrokenLog(ListLog):
        def append(self, payload: bytes) -> int:
            raise RuntimeError("/secret/path exploded")

    kernel, _ = make(log=BrokenLog(), policy=FakePolicy(allowed=False))
    d = kernel.submit(REQ)
    assert [r.code for r in d.reasons] == ["forbidden", "log_append_failed"]
    assert d.reasons[-1].message == "the decision could not be logged: `RuntimeError`"
    assert d.policy_ids == ("f1",)


def test_dry_run_decides_as_submit_does_and_records_nothing() -> None:
    for policy in (FakePolicy(), FakePolicy(allowed=False)):
        kernel, log = make(policy=policy)
        dry = kernel.dry_run(REQ)
        assert log.entries == []
        real = kernel.submit(REQ)
        assert (dry.effect, dry.reasons, dry.request_id) == (real.effect, real.reasons, "r-1")
        assert (dry.capability_id, dry.policy_ids) == (real.capability_id, real.policy_ids)
        assert (dry.log_index, dry.dry_run, dry.receipt) == (None, True, None)
        assert dry.to_dict()["dry_run"] is True and not real.dry_run


def test_dry_run_of_bad_input_or_a_failure_is_a_deny() -> None:
    kernel, log = make()
    bad = kernel.dry_run(b"{not json")
    assert bad.effect is Permission.DENY and (bad.reasons[0].stage, bad.reasons[0].code) == (
        Stage.SCHEMA,
        "bad_request",
    )
    assert "not JSON" in bad.reasons[0].message
    boom, _ = make(policy=FakePolicy(boom=True))
    d = boom.dry_run(REQ)
    assert d.effect is Permission.DENY and (d.reasons[0].stage, d.reasons[0].code) == (
        Stage.INTERNAL,
        "internal_error",
    )
    assert d.reasons[0].message == "decision failed: `RuntimeError`"
    assert log.entries == [] and d.log_index is None


def test_admin_action_through_bridge_denied() -> None:
    kernel, log = make()
    d = kernel.submit({**REQ, "action": "policy.activate", "resource": "policies/x"})
    assert d.effect is Permission.DENY
    assert (d.reasons[0].stage, d.reasons[0].code) == (Stage.SCHEMA, "admin_via_bridge")
    assert "`policy.activate` cannot arrive through the bridge" in d.reasons[0].message
    assert len(log.entries) == 1


@pytest.mark.parametrize("action", ["artifact.persist", "policy.activate"])
def test_a_body_claiming_the_admin_channel_is_denied_before_the_capability(action: str) -> None:
    caps = CountingCaps()
    kernel, log = make(caps=caps)  # the fake policy permits everything
    d = kernel.submit({**REQ, "action": action, "channel": "admin"})
    assert d.effect is Permission.DENY
    assert (d.reasons[0].stage, d.reasons[0].code) == (Stage.SCHEMA, "admin_channel_via_bridge")
    assert d.reasons[0].message == (
        "a request through the bridge cannot name channel `admin`; omit `channel` or send"
        " `bridge` (admin changes go through the admin plane: `sop cap`, `sop policy activate`)"
    )
    assert caps.calls == 0 and len(log.entries) == 1
    assert json.loads(log.entries[0])["request"]["channel"] == "admin"  # what was claimed


def test_the_decision_entry_records_what_was_decided() -> None:
    kernel, log = make()
    d = kernel.submit(REQ)
    assert json.loads(log.entries[0]) == {
        "type": "decision",
        "time": 1_700_000_000,
        "effect": "ALLOW",
        "capability_id": "cap-1",
        "policy_ids": ["p1"],
        "reasons": [r.to_dict() for r in d.reasons],
        "request": parse_request(REQ).to_dict(),
        "policy_digest": FakePolicy.digest,  # the set it was decided by (replicas may differ)
    }
    denied, denied_log = make(policy=FakePolicy(allowed=False))
    d = denied.submit(REQ)
    entry = json.loads(denied_log.entries[0])
    assert (entry["effect"], entry["policy_ids"]) == ("DENY", ["f1"])
    assert entry["policy_digest"] == FakePolicy.digest
    unheld, unheld_log = make(caps=FakeCaps(CapabilityError("no", code="revoked")))
    unheld.submit(REQ)
    assert "policy_digest" not in json.loads(unheld_log.entries[0])  # no policy was asked
    assert entry["reasons"] == [r.to_dict() for r in d.reasons] and entry["reasons"]


@pytest.mark.parametrize("raw", [b"{not json", '{"r": "\udcff"}', "[1]"])
def test_a_malformed_request_is_recorded_by_the_digest_of_its_bytes(raw: bytes | str) -> None:
    kernel, log = make()
    d = kernel.submit(raw)
    entry = json.loads(log.entries[0])
    data = raw.encode("utf-8", "replace") if isinstance(raw, str) else raw
    assert entry["malformed_request_digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
    assert "request" not in entry and entry["effect"] == "DENY"
    assert (entry["capability_id"], entry["policy_ids"]) == (None, [])
    assert d.entry_digest == "sha256:" + hashlib.sha256(log.entries[0]).hexdigest()


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({**REQ, "action": "artifact.delete"}, "unknown operation"),
        ({**REQ, "resource": "../etc/passwd"}, "`..`"),
        ({**REQ, "resource": "/abs/path"}, "malformed path"),
        ({**REQ, "context": {"nope": 1}}, "unknown context attribute"),
        ({**REQ, "context": {"size_bytes": "10"}}, "wrong type"),
        ({**REQ, "surprise": True}, "Extra inputs"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        ({**REQ, "context": {"session": "x" * 70_000}}, "bytes"),
    ],
)
def test_malformed_request_denied_and_logged(raw: Any, where: str) -> None:
    kernel, log = make()
    d = kernel.submit(raw)
    assert d.effect is Permission.DENY
    assert (d.reasons[0].stage, d.reasons[0].code) == (Stage.SCHEMA, "bad_request")
    assert where in d.reasons[0].message
    assert len(log.entries) == 1
    assert b"malformed_request_digest" in log.entries[0]


class Unprintable:
    def __repr__(self) -> str:
        raise ValueError("no repr")


@pytest.mark.parametrize(
    ("raw", "data"), [([1, "é"], repr([1, "é"]).encode()), (Unprintable(), b"")]
)
def test_a_request_of_another_type_is_recorded_by_a_digest_too(raw: Any, data: bytes) -> None:
    kernel, log = make()
    d = kernel.submit(raw)
    assert d.effect is Permission.DENY and d.log_index == 0
    entry = json.loads(log.entries[0])
    assert entry["malformed_request_digest"] == "sha256:" + hashlib.sha256(data).hexdigest()


class IndexLog(ListLog):
    def __init__(self, index: object) -> None:
        super().__init__()
        self.index = index

    def append(self, payload: bytes) -> int:
        super().append(payload)
        return self.index  # type: ignore[return-value]


@pytest.mark.parametrize("index", [-1, "0", None, True])
def test_a_log_answering_without_an_entry_index_turns_allow_into_deny(index: object) -> None:
    kernel, _ = make(log=IndexLog(index))
    d = kernel.submit(REQ)
    assert d.effect is Permission.DENY and d.log_index is None
    assert d.reasons[-1].message == (
        f"the decision could not be logged: the log returned `{index!r}` instead of an entry index"
    )


class ReceiptLog(ListLog):
    def __init__(self, answer: object = "receipt") -> None:
        super().__init__()
        self.answer = answer

    def append_receipt(self, payload: bytes) -> Receipt:
        receipt = Receipt(self.append(payload), hashlib.sha256(payload).digest(), 1)
        return receipt if self.answer == "receipt" else self.answer  # type: ignore[return-value]


def test_a_log_with_receipts_gives_the_decision_its_receipt() -> None:
    kernel, log = make(log=ReceiptLog())
    d = kernel.submit(REQ)
    assert d.receipt == Receipt(0, hashlib.sha256(log.entries[0]).digest(), 1)
    assert d.log_index == 0
    broken, _ = make(log=ReceiptLog(answer=None))
    d = broken.submit(REQ)
    assert d.effect is Permission.DENY and d.receipt is None
    assert d.reasons[-1].message.endswith("the log returned `None` instead of an entry index")


def test_a_malformed_request_the_log_cannot_take_is_still_answered() -> None:
    kernel, _ = make(log=ListLog(fail=True))
    d = kernel.submit(b"{not json")
    assert d.effect is Permission.DENY and d.request_id is None and d.log_index is None
    assert [r.code for r in d.reasons] == ["bad_request", "log_append_failed"]


def test_a_parser_failure_is_a_recorded_deny(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(raw: object) -> Request:
        raise MemoryError("parser ran out")

    monkeypatch.setattr(kernel_module, "parse_request", broken)
    kernel, log = make()
    d = kernel.submit(REQ)
    assert d.effect is Permission.DENY
    assert (d.reasons[0].stage, d.reasons[0].code) == (Stage.INTERNAL, "internal_error")
    assert d.reasons[0].message == "request parsing failed: `MemoryError`"
    assert len(log.entries) == 1 and "malformed_request_digest" in json.loads(log.entries[0])


def test_an_undecided_obligation_is_named_in_its_reason() -> None:
    class SilentGate(GateDouble):
        def check(self, obligation: Obligation) -> VerdictResult:
            return VerdictResult(Verdict.UNKNOWN, "sha256:ef", "", {"model": {"x": 2}})

    kernel, _ = make(gate=SilentGate())
    req = {**REQ, "obligations": [{"id": "o7", "format": "smt2", "source": "(assert true)"}]}
    d = kernel.submit(req)
    assert (d.reasons[0].code, d.reasons[0].obligation) == ("obligation_unknown", "o7")
    assert d.reasons[0].message == "obligation `o7` is `UNKNOWN`"
    assert d.reasons[0].counterexample is None  # only a REFUTED verdict carries one


def test_token_is_never_logged() -> None:
    kernel, log = make()
    kernel.submit({**REQ, "capability": "secret-token-value"})
    assert b"secret-token-value" not in log.entries[0]


def test_log_entry_is_canonical_json() -> None:
    import json

    kernel, log = make()
    d = kernel.submit(REQ)
    assert canonical_json(json.loads(log.entries[0])) == log.entries[0]
    assert d.entry_digest == digest(json.loads(log.entries[0]))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("principal", "Xdrac"),
        ("principal", "drac!"),
        ("principal", "d" * 70),
        ("request_id", "r 1"),
        ("request_id", "r" * 200),
        ("request_id", "-r1"),
    ],
)
def test_identifiers_must_match_their_whole_grammar(field: str, value: str) -> None:
    kernel, _ = make()
    d = kernel.submit({**REQ, field: value})
    assert d.effect is Permission.DENY
    assert d.reasons[0].stage is Stage.SCHEMA
    assert d.reasons[0].message.endswith(f"at `{field}`")


def test_with_write_keeps_every_other_field_of_the_decision() -> None:
    reason = Reason(Stage.POLICY, "permitted", "ok", ("p",))
    d = Decision(
        Permission.ALLOW,
        (reason,),
        "r-1",
        "cap-1",
        ("p",),
        7,
        Receipt(7, b"h", 8),
        entry_digest="sha256:aa",
        dry_run=True,
        decision_index=3,
        record=_Record(),
    )
    write = WriteResult("written", 9, "s", "n", "n.bin", "sha256:bb", 1, 1, Receipt(9, b"i", 10))
    e = d.with_write(write)
    for f in fields(Decision):
        if f.name != "write":
            assert getattr(e, f.name) == getattr(d, f.name), f.name
    assert e.write is write and d.write is None


@dataclass(frozen=True)
class _Record:
    def json_fields(self) -> dict[str, Any]:
        return {"thing": 1}


def test_the_kernel_contracts_refuse_incomplete_allows_and_early_effects() -> None:
    # The second line of INV-1/INV-9 (the postconditions of submit and submit_batch).
    ok = Decision(Permission.ALLOW, (), "r-1", "cap-1", ("p1",), 3)
    deny = Decision(Permission.DENY, (), "r-1")
    assert _allow_is_complete(ok) and _allow_is_complete(deny)
    for field, value in (("capability_id", None), ("policy_ids", ()), ("log_index", None)):
        assert not _allow_is_complete(replace(ok, **{field: value})), field
    after, same = Receipt(4, b"h", 5), Receipt(3, b"h", 5)
    assert _linked_after_decision(ok, after) and _linked_after_decision(deny, None)
    assert not _linked_after_decision(ok, same)  # an effect is logged after its ALLOW
    assert not _linked_after_decision(deny, after)  # and only for an ALLOW
    assert not _linked_after_decision(replace(ok, log_index=None), after)


@pytest.mark.parametrize("verdict", list(Verdict))
def test_every_verdict_but_proved_denies_with_its_own_code(verdict: Verdict) -> None:
    class OneVerdictGate(GateDouble):
        def check(self, obligation: Obligation) -> VerdictResult:
            return VerdictResult(verdict, "sha256:ab")

    kernel, _ = make(gate=OneVerdictGate())
    d = kernel.submit({**REQ, "obligations": [{"id": "o1", "format": "smt2", "source": "x"}]})
    assert d.allowed is (verdict is Verdict.PROVED)
    assert d.allowed or d.reasons[0].code == f"obligation_{verdict.value.lower()}"


def test_a_gate_answering_a_string_for_a_verdict_is_deny() -> None:
    class StringGate(GateDouble):
        def check(self, obligation: Obligation) -> VerdictResult:
            return VerdictResult("PROVED", "sha256:ab")  # type: ignore[arg-type]

    kernel, _ = make(gate=StringGate())
    d = kernel.submit({**REQ, "obligations": [{"id": "o1", "format": "smt2", "source": "x"}]})
    assert d.effect is Permission.DENY and d.reasons[0].code == "internal_error"


class ReplicaLog(ListLog):
    """A shared log whose first appends find that another replica changed the state.

    Before refusing, it applies that change (a revocation) to the capabilities the kernel
    reads, as the nexus's ``on_foreign`` hook does on a real replica.
    """

    def __init__(self, caps: FakeCaps, moves: int = 1) -> None:
        super().__init__()
        self.caps, self.moves = caps, moves

    def _moved(self) -> None:
        if self.moves:
            self.moves -= 1
            self.caps.error = CapabilityError("revoked on another replica", code="revoked")
            raise StateMovedError("another replica revoked the capability")

    def append_receipt(self, payload: bytes) -> Receipt:
        self._moved()
        return super().append_receipt(payload)

    def append_parts(self, parts: Sequence[LinkedPart]) -> list[tuple[Receipt, Receipt | None]]:
        self._moved()
        return super().append_parts(parts)


@pytest.mark.parametrize("batch", [False, True])
def test_a_decision_is_taken_again_when_another_replica_changed_the_state(batch: bool) -> None:
    caps = FakeCaps()
    kernel, log = make(caps=caps, log=ReplicaLog(caps))
    request = parse_request(REQ)
    d = kernel.submit_batch([(request, None)])[0][0] if batch else kernel.submit(REQ)
    # decided ALLOW on the old state, refused by the log, decided again: DENY, logged once
    assert d.effect is Permission.DENY and d.reasons[0].code == "revoked"
    assert len(log.entries) == 1 and b'"effect":"DENY"' in log.entries[0]


@pytest.mark.parametrize("batch", [False, True])
def test_a_state_that_keeps_moving_is_deny_and_logs_nothing(batch: bool) -> None:
    caps = FakeCaps()
    kernel, log = make(caps=caps, log=ReplicaLog(caps, moves=1_000))
    request = parse_request(REQ)
    d = kernel.submit_batch([(request, None)])[0][0] if batch else kernel.submit(REQ)
    assert d.effect is Permission.DENY and d.log_index is None
    assert "changed the state" in d.reasons[-1].message
    assert log.entries == []
