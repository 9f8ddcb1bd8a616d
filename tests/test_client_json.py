"""A remote decision is read back strictly: the JSON form round-trips, and nothing else passes.

The client trusts what its parser builds; an answer that is not a version 1
decision, or that breaks the form's rules (docs/DECISION_JSON.md), is an
error and never an ALLOW.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from sop_verified.client_json import RemoteRecord, decision_from_json, remote_error
from sop_verified.core.decision_fields import WriteResult
from sop_verified.core.request import Decision, Permission, Reason, Stage
from sop_verified.errors import InputError
from sop_verified.tools.tlog_store import Receipt

_CP = "sop.local/log\n8\nq2pM\n\n— sop.local/log Az3+Zg==\n"


def _allow() -> Decision:
    why = Reason(Stage.POLICY, "permitted", "permitted by `p`", ("p",))
    write = WriteResult(
        "written", 7, "drac", "s1/a", "s1/a", "sha256:" + "9e" * 32, 4, 1,
        Receipt(7, bytes.fromhex("a1" * 32), 8, _CP),
    )  # fmt: skip
    return Decision(
        Permission.ALLOW,
        (why,),
        "r-42",
        "cap-7f3a",
        ("p",),
        6,
        Receipt(6, bytes.fromhex("5f" * 32), 8, _CP),
        entry_digest="sha256:" + "3c" * 32,
        write=write,
    )


def _deny() -> Decision:
    why = Reason(Stage.CAPABILITY, "expired", "capability `c` expired", capability_id="c")
    return Decision(Permission.DENY, (why,), "r-43", "c", (), 9, Receipt(9, b"\x01" * 32, 10, None))


@pytest.mark.parametrize("decision", [_allow(), _deny()], ids=["allow", "deny"])
def test_a_decision_round_trips_through_its_json_form(decision: Decision) -> None:
    wire = orjson.loads(orjson.dumps(decision.to_dict()))
    again = decision_from_json(wire)
    assert again == decision
    assert again.to_dict() == decision.to_dict()


def test_protocol_keys_are_kept_as_sent() -> None:
    wire = {**_allow().to_dict(), "artifact": {"name": "a", "inputs": []}, "replayed": True}
    again = decision_from_json(wire)
    assert isinstance(again.record, RemoteRecord)
    assert again.to_dict() == wire


def _broken(**change: Any) -> dict[str, Any]:
    wire = _allow().to_dict()
    wire.update(change)
    return {k: v for k, v in wire.items() if v is not _GONE}


_GONE = object()


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"log_index": None, "receipt": _GONE}, "log_index"),  # an ALLOW never logged
        ({"dry_run": True}, "log_index"),  # a dry run authorizes nothing
        ({"version": 2}, "version"),
        ({"effect": "MAYBE"}, "effect"),
        ({"effect": "allow"}, "effect"),
        ({"log_index": "6"}, "log_index"),
        ({"log_index": True}, "log_index"),
        ({"log_index": 5}, "receipt.index"),  # the receipt is another entry's
        ({"receipt": {"index": 8, "leaf_hash": "00" * 32, "tree_size": 8}}, "receipt"),
        ({"receipt": {"index": 6, "leaf_hash": "zz", "tree_size": 8}}, "receipt.leaf_hash"),
        ({"entry_digest": "md5:00"}, "entry_digest"),
        ({"reasons": [{"stage": "nowhere", "code": "x", "message": "x"}]}, "reasons.0.stage"),
        ({"effect": _GONE}, "effect"),
    ],
)
def test_an_answer_that_is_not_a_decision_is_refused(change: dict[str, Any], where: str) -> None:
    with pytest.raises(InputError) as caught:
        decision_from_json(_broken(**change))
    assert caught.value.where == where


def test_a_deny_without_a_reason_is_refused() -> None:
    wire = {**_deny().to_dict(), "reasons": []}
    with pytest.raises(InputError, match="DENY without a reason"):
        decision_from_json(wire)


def test_a_problem_becomes_a_remote_error_with_its_logged_decision() -> None:
    body = {
        "type": "tag:sop-verified,2026:problem/bad_request",
        "status": 400,
        "detail": "Field required; at `request_id`",
        "code": "bad_request",
        "stage": "schema",
        "decision": _deny().to_dict(),
    }
    err = remote_error(400, orjson.dumps(body), "application/problem+json")
    assert (err.status, err.code, err.stage) == (400, "bad_request", "schema")
    assert err.decision == _deny()
    assert "`bad_request` (HTTP 400)" in str(err)


def test_an_answer_that_is_no_problem_still_becomes_a_remote_error() -> None:
    err = remote_error(404, b"Not Found", "text/plain")
    assert (err.status, err.code, err.detail, err.decision) == (404, "http_404", "Not Found", None)
