"""``OpsKernel.submit_batch``: each request decided alone, all logged in one durable batch.

The batch path is what ``SOP.persist`` takes under concurrency (ADR 0007), so
it must decide exactly as the one-at-a-time path does, and a failure of one
request's effect, or of the whole append, must never leave an ALLOW without
its log entry (INV-9) or take another request's answer.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_kernel import REQ, FakeCap, FakeCaps, FakePolicy, GateDouble, ListLog, make
from tools.tlog_memory import MemoryLogStore

from sop_verified.core.kernel import LinkedEffect
from sop_verified.core.obligations import Verdict, VerdictResult
from sop_verified.core.request import Obligation, Permission, Request, Stage, parse_request
from sop_verified.errors import CapabilityError, StorageError
from sop_verified.tools.signed_note import Signer, generate
from sop_verified.tools.tlog import TransparencyLog
from sop_verified.tools.tlog_store import LinkedPart, Receipt


class TokenCaps(FakeCaps):
    """Admits every token but `forged`."""

    def check(self, token: str, request: Request) -> FakeCap:
        if token == "forged":
            raise CapabilityError("the token's signature does not verify", code="bad_signature")
        return FakeCap()


class KernelLog(TransparencyLog):
    """The transparency log as the kernel's port: a decision's append answers its receipt."""

    def append_receipt(self, payload: bytes) -> Receipt:
        return self.append(payload)


def _log() -> KernelLog:
    return KernelLog(MemoryLogStore(), origin="example.test/log", signer=_SIGNER)


_SIGNER = Signer.from_string(generate("example.test/log")[0])


def _req(i: int, **kw: Any) -> Request:
    return parse_request({**REQ, "request_id": f"r-{i}", **kw})


def _effect(tag: str) -> LinkedEffect:
    return LinkedEffect(lambda index: f"{tag} after {index}".encode(), (("s", tag, b"x"),))


def _mixed() -> list[Request]:
    return [_req(0), _req(1, capability="forged"), _req(2), _req(3, action="artifact.read")]


class JudgingGate(GateDouble):
    """PROVED, except the obligations whose id starts with `refute`; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def check(self, obligation: Obligation) -> VerdictResult:
        self.calls += 1
        if obligation.id.startswith("refute"):
            return VerdictResult(Verdict.REFUTED, "sha256:cd", "no", {"model": {"x": 1}})
        return VerdictResult(Verdict.PROVED, "sha256:ab")


def _ob(ob_id: str) -> dict[str, str]:
    return {"id": ob_id, "format": "smt2", "source": "(assert false)"}


def _varied() -> list[Request]:
    """Requests that stop at every stage, in an order that mixes them."""
    return [
        _req(0, obligations=[_ob("fine"), _ob("refute-1")]),
        _req(1, capability="forged"),
        _req(2, action="capability.admit"),  # an admin action through the bridge
        _req(3, obligations=[_ob("fine-2")]),
        _req(4, principal="emp"),  # the fake policy forbids nothing; the permit is checked
        _req(5, obligations=[_ob("refute-2")]),
        _req(6),
    ]


def test_a_batch_answers_each_request_in_its_place_whatever_stage_denies_it() -> None:
    requests = _varied()
    kernel, _ = make(caps=TokenCaps(), gate=JudgingGate(), log=_log())

    got = kernel.submit_batch([(r, None) for r in requests])

    alone, _ = make(caps=TokenCaps(), gate=JudgingGate())
    for (d, _), r in zip(got, requests, strict=True):
        one = alone.submit(r)
        assert d.request_id == r.request_id
        assert (d.effect, d.reasons, d.capability_id, d.policy_ids) == (
            one.effect,
            one.reasons,
            one.capability_id,
            one.policy_ids,
        )
    codes = [d.reasons[0].code for d, _ in got]
    assert codes[1] == "bad_signature" and codes[2] == "admin_via_bridge"
    assert [d.reasons[0].obligation for d in (got[0][0], got[5][0])] == ["refute-1", "refute-2"]
    assert [d.effect for d, _ in got] == [
        Permission.DENY,
        Permission.DENY,
        Permission.DENY,
        Permission.ALLOW,
        Permission.ALLOW,
        Permission.DENY,
        Permission.ALLOW,
    ]


class ShortGate(JudgingGate):
    """A gate whose batch answer drops one verdict: nothing may be matched to the wrong one."""

    def check_many(self, obligations: list[Obligation]) -> list[VerdictResult]:
        return [self.check(ob) for ob in obligations][1:]


def test_a_component_answering_out_of_place_fails_closed_per_request() -> None:
    gate = ShortGate()
    kernel, _ = make(caps=TokenCaps(), gate=gate, log=_log())

    got = kernel.submit_batch([(_req(i, obligations=[_ob(f"fine-{i}")]), None) for i in range(3)])

    assert [d.effect for d, _ in got] == [Permission.DENY] * 3
    assert all(d.reasons[0].code == "internal_error" for d, _ in got)


class PickyPolicy(FakePolicy):
    """Permits every request but `r-1`, whose evaluation raises."""

    def evaluate(self, request: Request) -> Any:
        if request.request_id == "r-1":
            raise RuntimeError("cannot evaluate r-1")
        return super().evaluate(request)


def test_one_request_failing_a_stage_leaves_the_others_decided() -> None:
    kernel, _ = make(policy=PickyPolicy(), log=_log())

    got = kernel.submit_batch([(_req(i), None) for i in range(3)])

    assert [d.effect for d, _ in got] == [Permission.ALLOW, Permission.DENY, Permission.ALLOW]
    bad = got[1][0]
    assert (bad.reasons[0].stage, bad.reasons[0].code) == (Stage.INTERNAL, "internal_error")
    assert bad.reasons[0].message == "decision failed: `RuntimeError`"
    assert all(d.log_index is not None for d, _ in got)  # each one logged


def test_batch_decides_each_request_as_submit_does() -> None:
    requests = _mixed()
    policy = FakePolicy()
    kernel, _ = make(caps=TokenCaps(), policy=policy, log=_log())
    alone, _ = make(caps=TokenCaps(), policy=policy)

    got = kernel.submit_batch([(r, _effect(r.request_id)) for r in requests])

    assert [d.request_id for d, _ in got] == [r.request_id for r in requests]
    for (d, _), r in zip(got, requests, strict=True):
        one = alone.submit(r)
        assert (d.effect, d.reasons, d.capability_id, d.policy_ids) == (
            one.effect,
            one.reasons,
            one.capability_id,
            one.policy_ids,
        )
    assert [d.effect for d, _ in got] == [
        Permission.ALLOW,
        Permission.DENY,
        Permission.ALLOW,
        Permission.ALLOW,
    ]


def test_each_allow_is_logged_with_its_effect_and_each_deny_alone() -> None:
    log = _log()
    kernel, _ = make(caps=TokenCaps(), log=log)

    got = kernel.submit_batch([(r, _effect(r.request_id)) for r in _mixed()])

    (a, ea), (deny, none), (b, eb), (c, ec) = got
    assert none is None and deny.log_index is not None  # a DENY is logged, alone
    for d, e in ((a, ea), (b, eb), (c, ec)):
        assert d.log_index is not None and e is not None and e.index == d.log_index + 1
        assert log.entry(e.index) == f"{d.request_id} after {d.log_index}".encode()
    assert log.size == 7  # three ALLOWs with their effects, one DENY
    for (d, _), r in zip(got, _mixed(), strict=True):
        assert d.log_index is not None
        assert json.loads(log.entry(d.log_index))["request"] == r.to_dict()
    assert len({d.receipt.checkpoint for d, _ in got if d.receipt}) == 1  # one durable batch


def test_a_failing_effect_denies_its_own_request_only() -> None:
    log = _log()
    kernel, _ = make(log=log)

    def doomed(_index: int) -> bytes:
        raise OSError("cannot build the effect")

    items = [(_req(0), _effect("a")), (_req(1), LinkedEffect(doomed)), (_req(2), _effect("c"))]
    (a, _), (bad, none), (c, _) = kernel.submit_batch(items)

    assert bad.effect is Permission.DENY and none is None and bad.log_index is None
    assert (
        bad.reasons[-1].stage is Stage.LOG and "cannot build the effect" in bad.reasons[-1].message
    )
    assert a.allowed and c.allowed
    assert log.size == 4  # nothing of request 1: neither its ALLOW nor an effect
    assert b"r-1" not in b"".join(log.entry(i) for i in range(log.size))


def test_an_entry_that_cannot_be_built_denies_its_own_request_only() -> None:
    store = MemoryLogStore()
    log = KernelLog(store, origin="example.test/log", signer=_SIGNER)
    ticks = iter([1, None, 3])

    def clock() -> int:
        tick = next(ticks)
        if tick is None:
            raise OSError("the clock is gone")
        return tick

    kernel, _ = make(log=log, now=clock)
    items = [(_req(i), _effect(f"e{i}")) for i in range(3)]
    got = kernel.submit_batch(items)

    assert len(got) == 3 and [d.request_id for d, _ in got] == ["r-0", "r-1", "r-2"]
    (a, ea), (bad, none), (c, ec) = got
    assert bad.effect is Permission.DENY and none is None and bad.log_index is None
    assert bad.reasons[-1].code == "log_append_failed" and "clock is gone" in str(bad.reasons)
    assert a.allowed and c.allowed and ea is not None and ec is not None
    assert log.size == 4 and b"r-1" not in b"".join(log.entry(i) for i in range(log.size))
    assert log.entry(ea.index) == b"e0 after 0" and log.entry(ec.index) == b"e2 after 2"
    assert store.attachments == [("s", "e0", b"x"), ("s", "e2", b"x")]  # the bytes go with them


class PartsLog:
    """A log with batches whose append fails, or answers the wrong number of parts."""

    def __init__(self, answer: str) -> None:
        self.answer = answer

    def append(self, payload: bytes) -> int:
        raise AssertionError("a batch must not fall back to one append per decision")

    def append_receipt(self, payload: bytes) -> Receipt:
        raise AssertionError("a batch must not fall back to one append per decision")

    def append_parts(self, parts: list[LinkedPart]) -> list[tuple[Receipt, Receipt | None]]:
        if self.answer == "raise":
            raise StorageError("disk on fire")
        return []  # "short": fewer answers than parts


@pytest.mark.parametrize("answer", ["raise", "short"])
def test_a_failed_append_denies_every_request_keeping_deny_reasons(answer: str) -> None:
    kernel, _ = make(caps=TokenCaps(), log=PartsLog(answer))

    got = kernel.submit_batch([(r, _effect(r.request_id)) for r in _mixed()])

    assert all(d.effect is Permission.DENY and e is None and d.log_index is None for d, e in got)
    assert all(d.reasons[-1].code == "log_append_failed" for d, _ in got)
    why = "disk on fire" if answer == "raise" else "the log answered 4 parts with `[]`"
    assert all(d.reasons[-1].message == f"the decision could not be logged: {why}" for d, _ in got)
    assert got[1][0].reasons[0].stage is Stage.CAPABILITY  # a DENY keeps why it was denied


def test_a_batch_is_appended_through_the_logs_parts_each_effect_after_its_allow() -> None:
    kernel, log = make(caps=TokenCaps(), log=ListLog())

    got = kernel.submit_batch([(r, _effect(r.request_id)) for r in _mixed()])

    # every log takes parts (the port declares it): ALLOW, its effect, DENY alone, ...
    assert [d.log_index for d, _ in got] == [0, 2, 3, 5]
    assert [e and e.index for _, e in got] == [1, None, 4, 6]
    assert len(log.entries) == 7 and log.entries[1] == b"r-0 after 0"
