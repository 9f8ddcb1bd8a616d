"""The protocol operations over HTTP: persisted bytes, DRAC, EMP, CSP, against a real `sop serve`.

Each server here runs on a data directory whose ``drac-artifacts`` scope takes
at most 64 KiB a blob, with the demo's sound policies and capabilities for
the three protocols, and client certificates for each.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from served import Served

from sop_verified.client_protocols import RemoteCSP, RemoteDRAC, RemoteEMP
from sop_verified.nexus.config import DEFAULT_CONFIG, init_data_dir
from sop_verified.nexus.demo import OBLIGATIONS, SOUND_POLICIES
from sop_verified.nexus.sop import SOP
from sop_verified.server.certs import client_ssl_context, issue_client

LIMIT = 65_536
_DRAC_SCOPE = 'path = "artifacts/drac/**"\nmax_blob_bytes = 16777216'


@dataclass(frozen=True)
class Ops:
    """A prepared data directory: tokens and client certificates per protocol."""

    data_dir: Path
    tokens: dict[str, str]
    certs: dict[str, tuple[Path, Path, Path]]


def prepare_ops(base: Path) -> Ops:
    assert _DRAC_SCOPE in DEFAULT_CONFIG
    data_dir = base / "data"
    config = DEFAULT_CONFIG.replace(
        _DRAC_SCOPE, f'path = "artifacts/drac/**"\nmax_blob_bytes = {LIMIT}'
    )
    init_data_dir(data_dir, config_text=config)
    (base / "policies").mkdir()
    (base / "policies" / "policies.toml").write_text(SOUND_POLICIES)
    day = int(time.time()) + 86_400
    grants = {
        "drac": (["artifact.persist", "artifact.read", "phase.advance"], ["artifacts/drac/**"]),
        "emp": (["verdict.record", "obligation.submit"], ["verdicts/emp/**"]),
        "csp": (
            ["state.persist", "snapshot.seal", "snapshot.resume"],
            ["state/csp/**", "snapshots/csp/**"],
        ),
    }
    tokens = {}
    with SOP.boot(data_dir) as sop:
        sop.activate_policy(base / "policies")
        for name, (actions, resources) in grants.items():
            _, tokens[name] = sop.admit(name, actions, resources, expires=day)
    certs = {}
    for name in grants:
        issued = issue_client(data_dir, name, base / f"{name}-cert")
        certs[name] = (issued.cert_path, issued.key_path, issued.ca_path)
    return Ops(data_dir, tokens, certs)


def client(server: Served, ops: Ops, principal: str) -> httpx.Client:
    ctx = client_ssl_context(*ops.certs[principal])
    return httpx.Client(base_url=server.bridge, verify=ctx, timeout=60)


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory) -> Ops:
    return prepare_ops(tmp_path_factory.mktemp("ops"))


@pytest.fixture(scope="module")
def server(ops: Ops) -> Iterator[Served]:
    s = Served(ops.data_dir, "--no-admin-socket")
    yield s
    assert s.stop() == 0, s.stderr()


def _header(request: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(request)).rstrip(b"=").decode()


def persist_request(ops: Ops, name: str, *, principal: str = "drac") -> dict[str, Any]:
    return {
        "request_id": f"p-{name}",
        "principal": principal,
        "action": "artifact.persist",
        "resource": f"artifacts/drac/{name}",
        "capability": ops.tokens["drac"],
    }


def put(
    http: httpx.Client, request: dict[str, Any], content: Any, **headers: str
) -> httpx.Response:
    sent = {"SOP-Request": _header(request), "Content-Type": "application/octet-stream", **headers}
    return http.post("/v1/persist", content=content, headers=sent)


def blob_files(ops: Ops) -> set[Path]:
    return {p for p in (ops.data_dir / "scopes").rglob("*") if p.is_file()}


# ---- persisted bytes ---------------------------------------------------------------------
def test_persist_4kib_is_written_and_read_back_through_a_decision(server: Served, ops: Ops) -> None:
    data = bytes(range(256)) * 16
    with client(server, ops, "drac") as http:
        answer = put(http, persist_request(ops, "four-kib.bin"), data)
        assert answer.status_code == 200, answer.text
        decision = answer.json()
        assert decision["effect"] == "ALLOW", decision
        assert decision["write"]["outcome"] == "written"
        assert decision["write"]["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
        read = {
            "request_id": "r-four-kib",
            "principal": "drac",
            "action": "artifact.read",
            "resource": "artifacts/drac/four-kib.bin",
            "capability": ops.tokens["drac"],
        }
        got = http.post("/v1/read", json=read)
    assert got.status_code == 200, got.text
    assert got.content == data
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["sop-content-digest"] == decision["write"]["digest"]
    said = orjson.loads(base64.urlsafe_b64decode(got.headers["sop-decision"] + "=="))
    assert said["effect"] == "ALLOW"
    assert int(got.headers["sop-log-index"]) == said["log_index"] > decision["log_index"]


def test_read_denied_is_a_403_problem_with_the_logged_decision(server: Served, ops: Ops) -> None:
    read = {
        "request_id": "r-denied",
        "principal": "drac",
        "action": "artifact.read",
        "resource": "artifacts/drac/four-kib.bin",
        "capability": "not-a-token",
    }
    with client(server, ops, "drac") as http:
        got = http.post("/v1/read", json=read)
    assert got.status_code == 403
    body = got.json()
    assert body["code"] == "denied"
    assert body["decision"]["effect"] == "DENY"
    assert body["decision"]["log_index"] is not None


def test_persist_naming_another_principal_is_denied(server: Served, ops: Ops) -> None:
    with client(server, ops, "emp") as http:
        answer = put(http, persist_request(ops, "as-emp.bin"), b"x" * 10)
    assert answer.status_code == 200
    decision = answer.json()
    assert decision["effect"] == "DENY"
    assert decision["reasons"][0]["code"] == "principal_mismatch"
    assert "write" not in decision


@pytest.mark.parametrize("streamed", [False, True], ids=["declared", "streamed"])
def test_persist_past_the_scope_limit_is_413_and_nothing_is_stored(
    server: Served, ops: Ops, streamed: bool
) -> None:
    data = b"z" * (LIMIT + 1)
    before = blob_files(ops)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while reading
        for i in range(0, len(data), 8192):
            yield data[i : i + 8192]

    with client(server, ops, "drac") as http:
        name = f"too-large-{streamed}.bin"
        answer = put(http, persist_request(ops, name), chunks() if streamed else data)
        assert answer.status_code == 413, answer.text
        assert answer.json()["code"] == "body_too_large"
        exact = put(http, persist_request(ops, f"at-limit-{streamed}.bin"), data[:LIMIT])
    assert exact.json()["write"]["outcome"] == "written"  # the limit itself is accepted
    added = blob_files(ops) - before
    assert len(added) <= 1  # the one at the limit (content-addressed: one file for both)
    assert all(p.stat().st_size == LIMIT for p in added)


# ---- idempotency and the log, on a server of its own ---------------------------------------
def _log_entries(data_dir: Path) -> list[dict[str, Any]]:
    with SOP.boot(data_dir) as sop:
        return [orjson.loads(p) for _, _, p in sop.store.log.log_entries(0)]


def test_idempotent_persist_retry_has_one_effect_and_a_413_none(tmp_path: Path) -> None:
    ops = prepare_ops(tmp_path)
    own = Served(ops.data_dir, "--no-admin-socket")
    data = b"once " * 100
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    too_large = b"q" * (LIMIT + 1)
    try:
        with client(own, ops, "drac") as http:
            first = put(http, persist_request(ops, "once.bin"), data, **{"Idempotency-Key": "k-1"})
            again = put(http, persist_request(ops, "once.bin"), data, **{"Idempotency-Key": "k-1"})
            other = put(http, persist_request(ops, "twice.bin"), data, **{"Idempotency-Key": "k-1"})
            refused = put(http, persist_request(ops, "big.bin"), too_large)
    finally:
        assert own.stop() == 0, own.stderr()
    assert first.status_code == again.status_code == 200
    assert first.content == again.content  # the first answer, byte for byte
    assert other.status_code == 422
    assert refused.status_code == 413
    entries = _log_entries(ops.data_dir)
    effects = [e for e in entries if e.get("type") == "persist.effect"]
    assert len([e for e in effects if e.get("digest") == digest]) == 1, effects
    big = "sha256:" + hashlib.sha256(too_large).hexdigest()
    assert not [e for e in entries if big in orjson.dumps(e).decode()]
    decided = [e for e in entries if (e.get("request") or {}).get("request_id") == "p-once.bin"]
    assert len(decided) == 1
    assert decided[0]["transport"] == {"principal": "drac", "idempotency_key": "k-1"}


# ---- the protocols, remotely -----------------------------------------------------------------
def test_drac_phase_and_artifact_catalogued_remotely(server: Served, ops: Ops) -> None:
    token = ops.tokens["drac"]
    with client(server, ops, "drac") as http:
        drac = RemoteDRAC(http)
        opened = drac.open_session("remote-1", token=token)
        assert opened.allowed, opened.reasons
        data = b'{"deps": []}'
        stored = drac.catalog("remote-1", "SCAN", "deps.json", data, token=token)
        assert stored.allowed, stored.reasons
        assert stored.write is not None and stored.write.outcome == "written"
        assert stored.record is not None
        assert stored.record["artifact"]["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
        done = drac.complete("remote-1", "SCAN", token=token)
        assert done.allowed, done.reasons
        assert done.record is not None and done.record["phase"]["event"] == "complete"
        early = drac.enter("remote-1", "ASSEMBLE", token=token)  # RESOLVE comes first
        assert not early.allowed
        query = drac.artifacts(token=token, session="remote-1")
    assert query.allowed
    assert [a["name"] for a in query.artifacts] == ["deps.json"]


def test_drac_call_with_an_emp_certificate_is_refused_principal_mismatch_and_logged(
    server: Served, ops: Ops
) -> None:
    with client(server, ops, "emp") as http:
        decision = RemoteDRAC(http).open_session("stolen-1", token=ops.tokens["drac"])
        assert not decision.allowed
        assert decision.reasons[0].code == "principal_mismatch"
        assert decision.log_index is not None
        receipt = httpx.get(f"{server.read}/v1/receipts/{decision.log_index}", timeout=30)
    assert receipt.status_code == 200  # the refusal is in the log, with its proof
    with client(server, ops, "drac") as http:
        again = RemoteDRAC(http).open_session("stolen-1", token=ops.tokens["drac"])
    assert again.allowed, again.reasons  # the refused call moved nothing


def test_same_calls_give_the_same_kinds_of_decisions_in_process_and_remotely(
    server: Served, ops: Ops, tmp_path: Path
) -> None:
    local_ops = prepare_ops(tmp_path)
    token = ops.tokens
    with SOP.boot(local_ops.data_dir) as sop, client(server, ops, "csp") as csp_http:
        remote_csp = RemoteCSP(csp_http)
        kinds = []
        for facade, tokens in ((sop.csp, local_ops.tokens), (remote_csp, token)):
            blob = facade.put_blob(b"working memory", state_class="working", token=tokens["csp"])
            bad = facade.put_blob(b"x", state_class="secret-class", token=tokens["csp"])
            assert blob.write is not None
            digest = blob.write.digest
            sealed = facade.seal("agent-1", {"wm": digest}, parent=None, token=tokens["csp"])
            kinds.append(
                (
                    str(blob.effect),
                    str(bad.effect),
                    bad.reasons[0].code,
                    str(sealed.effect),
                )
            )
        assert kinds[0] == kinds[1] == ("ALLOW", "DENY", kinds[0][2], "ALLOW")
    with client(server, ops, "emp") as http:
        outcome = RemoteEMP(http).submit_obligation(
            dict(OBLIGATIONS[0][1], id="remote-ob"),
            token=token["emp"],
        )
    assert outcome.decision.allowed, outcome.decision.reasons
    assert outcome.verdict is not None and outcome.verdict["verdict"] == "PROVED"


def test_drac_step_retried_with_its_key_is_answered_once(server: Served, ops: Ops) -> None:
    body = {"session": "keyed-1", "token": ops.tokens["drac"]}
    key = {"Idempotency-Key": "drac-k-1"}
    with client(server, ops, "drac") as http:
        first = http.post("/v1/drac/open-session", json=body, headers=key)
        again = http.post("/v1/drac/open-session", json=body, headers=key)
        other = http.post("/v1/drac/open-session", json={**body, "session": "keyed-2"}, headers=key)
        fresh = http.post("/v1/drac/open-session", json=body)  # no key: decided again
    assert first.status_code == again.status_code == 200
    assert first.json()["effect"] == "ALLOW", first.json()
    assert first.content == again.content  # not a second step (that would be a DENY)
    assert other.status_code == 422
    assert fresh.json()["effect"] == "DENY"  # the session exists


def test_malformed_protocol_body_is_400_before_any_decision(server: Served, ops: Ops) -> None:
    with client(server, ops, "drac") as http:
        unknown = http.post("/v1/drac/enter", json={"session": "s", "phase": "SCAN", "x": 1})
        bad_b64 = http.post(
            "/v1/drac/catalog",
            json={"session": "s", "phase": "SCAN", "name": "n", "data": "%%", "token": "t"},
        )
        huge = http.post(  # no canonical JSON for this number: the key's fingerprint copes
            "/v1/emp/record-output",
            content=b'{"output": {"a": -127504214298155053039484928}, "token": "t"}',
            headers={"Content-Type": "application/json", "Idempotency-Key": "huge-1"},
        )
    assert unknown.status_code == bad_b64.status_code == huge.status_code == 400
    assert "decision" not in unknown.json()
    assert huge.json()["code"] == "bad_output"


def test_every_operation_is_in_the_openapi_document() -> None:
    from sop_verified.server.openapi import openapi_document
    from sop_verified.server.protocol_calls import CALLS

    paths = openapi_document()["paths"]
    for path in ["/v1/persist", "/v1/read", *(c.path for c in CALLS)]:
        assert "post" in paths[path], path
    persist = paths["/v1/persist"]["post"]
    assert list(persist["requestBody"]["content"]) == ["application/octet-stream"]
    assert "SOP-Request" in [p["name"] for p in persist["parameters"]]
    assert list(paths["/v1/read"]["post"]["responses"]["200"]["content"]) == [
        "application/octet-stream"
    ]


def test_retries_after_a_restart_are_answered_from_the_log(tmp_path: Path) -> None:
    ops = prepare_ops(tmp_path)
    step = {"session": "restarted-1", "token": ops.tokens["drac"]}
    answers = []
    for _ in range(2):  # the second server knows the keys only from the log
        own = Served(ops.data_dir, "--no-admin-socket")
        try:
            with client(own, ops, "drac") as http:
                stored = put(
                    http, persist_request(ops, "r.bin"), b"abc", **{"Idempotency-Key": "p"}
                )
                opened = http.post(
                    "/v1/drac/open-session", json=step, headers={"Idempotency-Key": "d"}
                )
                answers.append((stored.json(), opened.json()))
        finally:
            assert own.stop() == 0, own.stderr()
    (stored, opened), (stored_again, opened_again) = answers
    assert stored["effect"] == opened["effect"] == "ALLOW"
    assert stored_again["replayed"] and stored_again["effect"] == "ALLOW"
    assert stored_again["log_index"] == stored["log_index"]
    assert opened_again["replayed"] and opened_again["log_index"] == opened["log_index"]
