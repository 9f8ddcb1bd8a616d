"""One builder for a logged refusal: a DENY, logged when it can be, naming its decision."""

from __future__ import annotations

from sop_verified.core.refusals import logged_refusal
from sop_verified.core.request import Decision, Permission, Reason, Request, Stage
from sop_verified.errors import StorageError
from sop_verified.tools.tlog_store import Receipt

REQUEST = Request(request_id="r", principal="drac", action="artifact.persist", resource="a")
ALLOW = Decision(Permission.ALLOW, (), "r", "cap", ("p",), 41)
WHY = Reason(Stage.PERSISTENCE, "too_large", "no")
RECEIPT = Receipt(42, b"\1" * 32, 43)


def _fail() -> Receipt:
    raise StorageError("injected append failure")


def test_a_logged_refusal_is_a_deny_with_the_refusal_entry_receipt() -> None:
    d = logged_refusal(ALLOW, REQUEST, [WHY], lambda: RECEIPT)
    assert d.effect is Permission.DENY and d.reasons == (WHY,)
    assert d.log_index == 42 and d.receipt == RECEIPT
    assert d.decision_index == 41
    assert (d.entry_digest, d.dry_run, d.write, d.record) == (None, False, None, None)
    assert (d.request_id, d.capability_id, d.policy_ids) == ("r", "cap", ("p",))


def test_a_refusal_stands_when_its_entry_cannot_be_logged() -> None:
    d = logged_refusal(ALLOW, REQUEST, [WHY], _fail)  # spec: INV-2
    assert d.effect is Permission.DENY and d.log_index is None and d.receipt is None
    assert [r.code for r in d.reasons] == ["too_large", "log_append_failed"]
    assert d.reasons[1].stage is Stage.LOG and "StorageError" in d.reasons[1].message


def test_a_refusal_on_a_failing_log_is_not_tried_and_says_only_why() -> None:
    d = logged_refusal(ALLOW, REQUEST, [WHY], None)
    assert d.effect is Permission.DENY and d.reasons == (WHY,) and d.log_index is None


def test_kept_reasons_follow_the_refusal_and_its_log_failure() -> None:
    deny = Decision(Permission.DENY, (Reason(Stage.OBLIGATION, "refuted", "x"),), "r", None, (), 41)
    d = logged_refusal(deny, REQUEST, [WHY], _fail, kept=deny.reasons)
    assert [r.code for r in d.reasons] == ["too_large", "log_append_failed", "refuted"]
