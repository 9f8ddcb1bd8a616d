"""The bridge plane over real TLS: who may ask, what is decided, what a retry gets, errors."""

from __future__ import annotations

import json
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from served import Prepared, Served, request

from sop_verified import SOP, Verifier, verify_receipt
from sop_verified.server.certs import client_ssl_context, create_authority, issue_client

TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def client(prepared: Prepared, principal: str = "drac") -> httpx.Client:
    cert, key, ca = prepared.client(principal)
    return httpx.Client(verify=client_ssl_context(cert, key, ca), timeout=30)


def decide(served: Served, prepared: Prepared, body: Any, **headers: str) -> httpx.Response:
    with client(prepared) as c:
        return c.post(f"{served.bridge}/v1/decide", json=body, headers=headers)


def test_an_allowed_request_is_decided_logged_and_its_receipt_verifies_offline(
    served: Served, prepared: Prepared
) -> None:
    got = decide(served, prepared, request(prepared.token, 1))
    assert got.status_code == 200
    decision = got.json()
    assert decision["effect"] == "ALLOW" and isinstance(decision["log_index"], int)
    bundle = httpx.get(f"{served.read}/v1/receipts/{decision['log_index']}").text
    verified = verify_receipt(bundle, [Verifier.from_string(served.vkey)])
    assert verified.index == decision["log_index"]
    assert verified.leaf_hash.hex() == decision["receipt"]["leaf_hash"]


def test_a_denied_request_is_an_answer_not_an_error(served: Served, prepared: Prepared) -> None:
    got = decide(served, prepared, request(prepared.token, 2, allow=False))
    assert got.status_code == 200
    assert got.json()["effect"] == "DENY" and got.json()["log_index"] is not None


def test_a_body_naming_another_principal_is_denied_principal_mismatch_and_logged(
    served: Served, prepared: Prepared
) -> None:
    with client(prepared, "emp") as c:
        got = c.post(f"{served.bridge}/v1/decide", json=request(prepared.token, 3))
    decision = got.json()
    assert decision["effect"] == "DENY"
    assert decision["reasons"][0]["code"] == "principal_mismatch"
    assert decision["log_index"] is not None


def _handshake(served: Served, ctx: ssl.SSLContext) -> None:
    with httpx.Client(verify=ctx, timeout=10) as c:
        c.post(f"{served.bridge}/v1/decide", json={})


def _refusals(served: Served) -> float:
    text = httpx.get(f"{served.read}/metrics").text
    lines = [ln for ln in text.splitlines() if ln.startswith("sop_tls_handshake_refused_total{")]
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines)


def test_no_client_certificate_is_refused_at_the_handshake_and_counted(
    served: Served, prepared: Prepared
) -> None:
    before = _refusals(served)
    ctx = ssl.create_default_context(cafile=str(prepared.client()[2]))
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        _handshake(served, ctx)
    assert _refusals(served) == before + 1


def test_a_certificate_from_another_authority_is_refused(
    served: Served, prepared: Prepared, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    (other / "keys").mkdir(parents=True, mode=0o700)
    (other / "sop.toml").write_text("")
    create_authority(other)
    issued = issue_client(other, "drac", tmp_path / "out")
    ctx = client_ssl_context(issued.cert_path, issued.key_path, prepared.client()[2])
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        _handshake(served, ctx)


def test_an_expired_certificate_is_refused(
    served: Served, prepared: Prepared, tmp_path: Path
) -> None:
    past = datetime.now(UTC) - timedelta(days=10)
    issued = issue_client(prepared.data_dir, "drac", tmp_path / "old", days=1, now=past)
    ctx = client_ssl_context(issued.cert_path, issued.key_path, issued.ca_path)
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        _handshake(served, ctx)


def test_a_retry_with_the_same_key_gets_the_first_answer_and_decides_nothing(
    served: Served, prepared: Prepared
) -> None:
    body = request(prepared.token, 4)
    first = decide(served, prepared, body, **{"Idempotency-Key": "retry-4"})
    again = decide(served, prepared, body, **{"Idempotency-Key": "retry-4"})
    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    same_path = {**body, "request_id": "r-5"}  # its verdict is cached: one entry, the decision
    after = decide(served, prepared, same_path).json()
    assert after["log_index"] == first.json()["log_index"] + 1, "the retry logged nothing"


def test_a_key_reused_for_another_request_is_refused_422(
    served: Served, prepared: Prepared
) -> None:
    decide(served, prepared, request(prepared.token, 6), **{"Idempotency-Key": "reuse-6"})
    got = decide(served, prepared, request(prepared.token, 7), **{"Idempotency-Key": "reuse-6"})
    assert got.status_code == 422
    assert got.headers["content-type"] == "application/problem+json"
    assert got.json()["code"] == "idempotency_key_reused"


def test_a_malformed_body_is_a_logged_deny_answered_as_a_problem(
    served: Served, prepared: Prepared
) -> None:
    with client(prepared) as c:
        got = c.post(
            f"{served.bridge}/v1/decide",
            content=b'{"request_id": "r-8", "request_id": "r-9"}',
            headers={"content-type": "application/json"},
        )
    assert got.status_code == 400
    problem = got.json()
    assert problem["code"] == "bad_request" and problem["stage"] == "schema"
    assert "duplicate key" in problem["detail"]
    assert problem["decision"]["effect"] == "DENY"
    assert isinstance(problem["decision"]["log_index"], int)


def test_a_body_past_the_limit_is_refused_413_before_any_decision(
    served: Served, prepared: Prepared
) -> None:
    with client(prepared) as c:
        got = c.post(f"{served.bridge}/v1/decide", content=b"x" * (65 * 1024))
    assert got.status_code == 413 and got.json()["code"] == "body_too_large"


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [("GET", "/v1/nothing", 404, "not_found"), ("GET", "/v1/decide", 405, "method_not_allowed")],
)
def test_unknown_paths_and_methods_are_problems(
    served: Served, prepared: Prepared, method: str, path: str, status: int, code: str
) -> None:
    with client(prepared) as c:
        got = c.request(method, served.bridge + path)
    assert got.status_code == status
    assert got.headers["content-type"] == "application/problem+json"
    assert got.json()["code"] == code and got.json()["status"] == status


def test_a_batch_answers_each_request_in_order(served: Served, prepared: Prepared) -> None:
    items = [request(prepared.token, 10), request(prepared.token, 11, allow=False), {"x": 1}]
    with client(prepared) as c:
        got = c.post(f"{served.bridge}/v1/decide/batch", json={"requests": items})
    results = got.json()["results"]
    assert [r["effect"] for r in results] == ["ALLOW", "DENY", "DENY"]
    assert results[2]["reasons"][0]["code"] == "bad_request"
    assert all(isinstance(r["log_index"], int) for r in results)


def _authzen(prepared: Prepared, n: int, where: str = "drac") -> dict[str, Any]:
    return {
        "subject": {"type": "agent", "id": "drac", "properties": {"capability": prepared.token}},
        "action": {"name": "artifact.persist"},
        "resource": {"type": "artifact", "id": f"artifacts/{where}/az-{n}.bin"},
        "context": {"size_bytes": 5, "request_id": f"az-{n}"},
    }


def test_authzen_evaluation_is_the_same_decision(served: Served, prepared: Prepared) -> None:
    with client(prepared) as c:
        yes = c.post(f"{served.bridge}/access/v1/evaluation", json=_authzen(prepared, 1)).json()
        no = c.post(
            f"{served.bridge}/access/v1/evaluation", json=_authzen(prepared, 2, "emp")
        ).json()
    assert yes["decision"] is True and yes["context"]["sop"]["effect"] == "ALLOW"
    assert no["decision"] is False and no["context"]["sop"]["log_index"] is not None


def test_authzen_deny_on_first_deny_stops_there(served: Served, prepared: Prepared) -> None:
    body = {
        "evaluations": [_authzen(prepared, 3), _authzen(prepared, 4, "emp"), _authzen(prepared, 5)],
        "options": {"evaluations_semantic": "deny_on_first_deny"},
    }
    with client(prepared) as c:
        got = c.post(f"{served.bridge}/access/v1/evaluations", json=body).json()
    assert [e["decision"] for e in got["evaluations"]] == [True, False]


def test_health_ready_says_ready_and_metrics_count_decisions(
    served: Served, prepared: Prepared
) -> None:
    decide(served, prepared, request(prepared.token, 12))
    ready = httpx.get(f"{served.read}/health/ready")
    assert ready.status_code == 200 and ready.json()["state"] == "READY"
    assert httpx.get(f"{served.read}/health/live").status_code == 200
    text = httpx.get(f"{served.read}/metrics").text
    assert 'sop_decisions_total{code="permitted",effect="ALLOW",stage="policy"}' in text
    assert "sop_log_size" in text and "sop_decision_seconds_bucket" in text
    assert prepared.token not in text


def test_the_openapi_document_is_served(served: Served) -> None:
    spec = httpx.get(f"{served.read}/openapi.json").json()
    assert spec["openapi"].startswith("3.1") and "/v1/decide" in spec["paths"]


def test_the_entry_records_principal_key_and_traceparent(prepared_alone: Prepared) -> None:
    server = Served(prepared_alone.data_dir, "--no-admin-socket")
    try:
        got = decide(
            server,
            prepared_alone,
            request(prepared_alone.token, 13),
            **{"Idempotency-Key": "trace-13", "traceparent": TRACE},
        ).json()
    finally:
        assert server.stop() == 0
    with SOP.boot(prepared_alone.data_dir) as sop:
        entry = json.loads(sop.log.entry(got["log_index"]))
    assert entry["transport"] == {
        "principal": "drac",
        "idempotency_key": "trace-13",
        "traceparent": TRACE,
    }


def test_a_retry_after_a_restart_is_answered_from_the_log(prepared_alone: Prepared) -> None:
    body = request(prepared_alone.token, 14)
    server = Served(prepared_alone.data_dir, "--no-admin-socket")
    first = decide(server, prepared_alone, body, **{"Idempotency-Key": "restart-14"}).json()
    server.kill()
    server = Served(prepared_alone.data_dir, "--no-admin-socket")
    try:
        again = decide(server, prepared_alone, body, **{"Idempotency-Key": "restart-14"}).json()
        after = decide(server, prepared_alone, request(prepared_alone.token, 15)).json()
    finally:
        assert server.stop() == 0
    assert again["replayed"] is True
    assert (again["log_index"], again["effect"]) == (first["log_index"], first["effect"])
    assert again["receipt"]["leaf_hash"] == first["receipt"]["leaf_hash"]
    assert again["entry_digest"] == first["entry_digest"]
    assert after["log_index"] > first["log_index"]


@pytest.fixture
def prepared_alone(tmp_path: Path) -> Prepared:
    from served import prepare

    return prepare(tmp_path)


def test_an_authzen_retry_with_the_same_key_is_the_first_answer(
    served: Served, prepared: Prepared
) -> None:
    body = _authzen(prepared, 20)
    del body["context"]["request_id"]  # the id is derived from the body: a retry is the same
    with client(prepared) as c:
        url = f"{served.bridge}/access/v1/evaluation"
        first = c.post(url, json=body, headers={"Idempotency-Key": "az-20"})
        again = c.post(url, json=body, headers={"Idempotency-Key": "az-20"})
        other = c.post(url, json=_authzen(prepared, 21), headers={"Idempotency-Key": "az-20"})
    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    assert other.status_code == 422


def test_a_context_integer_canonical_json_cannot_hold_is_no_server_error(
    served: Served, prepared: Prepared
) -> None:
    body = request(prepared.token, 30)
    body["context"]["size_bytes"] = 2**60
    got = decide(served, prepared, body, **{"Idempotency-Key": "big-int-30"})
    assert got.status_code < 500
    assert got.json()["effect"] == "DENY"


@pytest.mark.parametrize("index", ["²", "٣", "01", "-1", "1e3", "99999999999999999999"])
def test_a_receipt_index_that_is_not_ascii_digits_is_a_400(served: Served, index: str) -> None:
    got = httpx.get(f"{served.read}/v1/receipts/{index}")
    assert got.status_code == 400 and got.json()["code"] == "bad_index"
