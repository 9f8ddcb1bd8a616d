"""The kernel's decision path against fake ports: every stage can deny, only all-pass allows."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import pytest

from sop_verified.core.health import Health
from sop_verified.core.kernel import OpsKernel
from sop_verified.core.obligations import UnwiredProofGate, Verdict, VerdictResult
from sop_verified.core.request import Decision, Effect, Obligation, Reason, Request, Stage
from sop_verified.errors import CapabilityError, StorageError
from sop_verified.tools.canonical import canonical_json, digest
from sop_verified.tools.tlog_store import Receipt


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


@dataclass
class Outcome:
    allowed: bool
    policy_ids: tuple[str, ...]
    code: str
    message: str

    def to_reason(self) -> Reason:
        return Reason(Stage.POLICY, self.code, self.message, policy_ids=self.policy_ids)


class FakePolicy:
    digest = "sha256:00"

    def __init__(self, allowed: bool = True, boom: bool = False) -> None:
        self.allowed, self.boom = allowed, boom

    def evaluate(self, request: Request) -> Outcome:
        if self.boom:
            raise RuntimeError("policy blew up")
        if self.allowed:
            return Outcome(True, ("p1",), "permitted", "permitted by `p1`")
        return Outcome(False, ("f1",), "forbidden", "forbidden by `f1`")


class ListLog:
    def __init__(self, fail: bool = False) -> None:
        self.entries: list[bytes] = []
        self.fail = fail

    def append(self, payload: bytes) -> int:
        if self.fail:
            raise StorageError("disk on fire")
        self.entries.append(payload)
        return len(self.entries) - 1


class ProvingGate:
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
        now=lambda: 1_700_000_000,
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
    assert d.effect is Effect.ALLOW
    assert d.log_index == 0
    assert b'"effect":"ALLOW"' in log.entries[0]
    assert d.capability_id == "cap-1"
    assert d.policy_ids == ("p1",)


@pytest.mark.parametrize("health", [Health.BOOTING, Health.DEGRADED, Health.FAILED])
def test_not_ready_denies_everything(health: Health) -> None:
    kernel, log = make(health=lambda: health)
    d = kernel.submit(REQ)
    assert d.effect is Effect.DENY
    assert d.reasons[0].stage is Stage.HEALTH
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
    assert d.effect is Effect.DENY
    assert d.reasons[0].code == "no_policy"


def test_capability_error_denies_with_its_code() -> None:
    err = CapabilityError("capability `c9` expired", code="expired", capability_id="c9")
    kernel, _ = make(caps=FakeCaps(err))
    d = kernel.submit(REQ)
    assert d.effect is Effect.DENY
    assert (d.reasons[0].stage, d.reasons[0].code, d.reasons[0].capability_id) == (
        Stage.CAPABILITY,
        "expired",
        "c9",
    )


def test_policy_forbid_denies_naming_policy() -> None:
    kernel, _ = make(policy=FakePolicy(allowed=False))
    d = kernel.submit(REQ)
    assert d.effect is Effect.DENY
    assert d.reasons[0].policy_ids == ("f1",)


def test_policy_exception_is_deny() -> None:
    kernel, log = make(policy=FakePolicy(boom=True))
    d = kernel.submit(REQ)
    assert d.effect is Effect.DENY
    assert d.reasons[0].stage is Stage.INTERNAL
    assert "RuntimeError" in d.reasons[0].message
    assert "blew up" not in d.reasons[0].message  # no internals leak to the caller
    assert len(log.entries) == 1


def test_unwired_gate_denies_any_obligation() -> None:
    kernel, _ = make(gate=UnwiredProofGate())
    req = {**REQ, "obligations": [{"id": "o1", "format": "smt2", "source": "(assert false)"}]}
    d = kernel.submit(req)
    assert d.effect is Effect.DENY
    assert d.reasons[0].stage is Stage.OBLIGATION
    assert d.reasons[0].code == "obligation_unknown"
    assert d.reasons[0].obligation == "o1"


def test_refuted_obligation_denies_with_counterexample() -> None:
    class RefutingGate:
        def check(self, obligation: Obligation) -> VerdictResult:
            return VerdictResult(Verdict.REFUTED, "sha256:cd", "sat", {"model": {"x": 1}})

    kernel, _ = make(gate=RefutingGate())
    req = {**REQ, "obligations": [{"id": "o1", "format": "smt2", "source": "(assert true)"}]}
    d = kernel.submit(req)
    assert d.effect is Effect.DENY
    assert d.reasons[0].counterexample == {"x": 1}


def test_log_failure_turns_allow_into_deny() -> None:
    kernel, _ = make(log=ListLog(fail=True))
    d = kernel.submit(REQ)
    assert d.effect is Effect.DENY
    assert d.reasons[-1].stage is Stage.LOG
    assert d.log_index is None


def test_admin_action_through_bridge_denied() -> None:
    kernel, _ = make()
    d = kernel.submit({**REQ, "action": "policy.activate", "resource": "policies/x"})
    assert d.effect is Effect.DENY
    assert d.reasons[0].code == "admin_via_bridge"


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
    assert d.effect is Effect.DENY
    assert d.reasons[0].stage is Stage.SCHEMA
    assert where in d.reasons[0].message
    assert len(log.entries) == 1
    assert b"malformed_request_digest" in log.entries[0]


def test_token_is_never_logged() -> None:
    kernel, log = make()
    kernel.submit({**REQ, "capability": "secret-token-value"})
    assert b"secret-token-value" not in log.entries[0]


def test_log_entry_is_canonical_json() -> None:
    import json

    kernel, log = make()
    d = kernel.submit(REQ)
    assert canonical_json(json.loads(log.entries[0])) == log.entries[0]
    assert d.extra["entry_digest"] == digest(json.loads(log.entries[0]))


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
    assert d.effect is Effect.DENY
    assert d.reasons[0].stage is Stage.SCHEMA
    assert d.reasons[0].message.endswith(f"at `{field}`")


def test_with_extra_keeps_every_other_field_of_the_decision() -> None:
    reason = Reason(Stage.POLICY, "permitted", "ok", ("p",))
    d = Decision(Effect.ALLOW, (reason,), "r-1", "cap-1", ("p",), 7, {"a": 1}, Receipt(7, b"h", 8))
    e = d.with_extra("effect", {"outcome": "written"})
    for f in fields(Decision):
        if f.name != "extra":
            assert getattr(e, f.name) == getattr(d, f.name), f.name
    assert e.extra == {"a": 1, "effect": {"outcome": "written"}} and d.extra == {"a": 1}
