"""The transport's facts: the authenticated principal decides, the entry records all three."""

from __future__ import annotations

import json

import pytest
from test_kernel import REQ, CountingCaps, make

from sop_verified.core.health import Health
from sop_verified.core.request import Permission, Stage, parse_request
from sop_verified.core.transport import Transport

TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_a_body_naming_another_principal_than_the_certificate_is_denied_and_logged() -> None:
    caps = CountingCaps()
    kernel, log = make(caps=caps)
    d = kernel.submit(parse_request(REQ).via(Transport("emp")))
    assert d.effect is Permission.DENY
    assert (d.reasons[0].stage, d.reasons[0].code) == (Stage.SCHEMA, "principal_mismatch")
    assert "`drac`" in d.reasons[0].message and "`emp`" in d.reasons[0].message
    assert caps.calls == 0, "refused before any capability is looked at"
    assert json.loads(log.entries[d.log_index or 0])["reasons"][0]["code"] == "principal_mismatch"


def test_the_authenticated_principal_itself_is_decided_as_usual() -> None:
    kernel, _ = make()
    assert kernel.submit(parse_request(REQ).via(Transport("drac"))).allowed


def test_the_entry_records_the_transport_and_a_plain_call_records_none() -> None:
    kernel, log = make()
    said = Transport("drac", idempotency_key="k-1", traceparent=TRACE)
    kernel.submit(parse_request(REQ).via(said))
    kernel.submit(REQ)
    assert json.loads(log.entries[0])["transport"] == {
        "principal": "drac",
        "idempotency_key": "k-1",
        "traceparent": TRACE,
    }
    assert "transport" not in json.loads(log.entries[1])


def test_a_deny_for_not_being_ready_is_logged_without_using_up_the_idempotency_key() -> None:
    """The key names the decision that answered the call: a refused retry of a SOP that is not
    READY (an alarm, a restart) leaves it for the decision made once SOP is READY again, so
    the log never holds two decisions with one key."""
    ready = [False]
    kernel, log = make(health=lambda: Health.READY if ready[0] else Health.DEGRADED)
    said = Transport("drac", idempotency_key="k-1", traceparent=TRACE)
    for _ in range(2):  # the client's retries while SOP is DEGRADED
        d = kernel.submit(parse_request(REQ).via(said))
        assert d.reasons[0].code == "not_ready" and d.log_index is not None
    ready[0] = True
    d = kernel.submit(parse_request(REQ).via(said))
    assert d.allowed
    entries = [json.loads(e) for e in log.entries]
    assert [e["transport"] for e in entries[:2]] == [
        {"principal": "drac", "traceparent": TRACE}
    ] * 2
    keyed = [i for i, e in enumerate(entries) if e["transport"].get("idempotency_key") == "k-1"]
    assert keyed == [d.log_index]


def test_a_body_cannot_set_the_transport() -> None:
    with pytest.raises(Exception, match="_transport"):
        parse_request({**REQ, "_transport": {"principal": "drac"}})


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "tab\t"])
def test_a_malformed_idempotency_key_is_refused(key: str) -> None:
    with pytest.raises(ValueError, match="idempotency key"):
        Transport("drac", idempotency_key=key)


@pytest.mark.parametrize(
    ("header", "kept"),
    [
        (TRACE, TRACE),
        (TRACE.upper(), TRACE),
        ("ff" + TRACE[2:], None),
        ("00-zz", None),
        (None, None),
    ],
)
def test_a_traceparent_is_kept_only_when_well_formed(header: str | None, kept: str | None) -> None:
    assert Transport.trace_or_none(header) == kept
