"""sop_verified.client against a real `sop serve`: decisions, problems, retries, receipts.

The retries are provoked by wrapping the client's real transport: a 429 the
server never sent, or a connection that drops after the server answered (the
server decided and logged; the client never heard). Either way the retry
carries the same ``Idempotency-Key``, and the log holds one decision for it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from served import Prepared, Served, prepare, request

from sop_verified import SOP, Verifier, verify_receipt
from sop_verified.client import AsyncClient, Client
from sop_verified.core.request import Permission, parse_request
from sop_verified.errors import RemoteError
from sop_verified.server.certs import client_ssl_context

_NO_ADMIN = "--no-admin-socket"  # until the admin plane lands: the bridge and read planes only
_QUEUE_FULL = orjson.dumps({"status": 429, "code": "queue_full", "detail": "the queue is full"})


@pytest.fixture(scope="module")
def remote(prepared: Prepared) -> Iterator[Served]:
    server = Served(prepared.data_dir, _NO_ADMIN)
    yield server
    assert server.stop() == 0, server.stderr()


def _client(prepared: Prepared, server: Served, **kw: Any) -> Client:
    cert, key, ca = prepared.client()
    return Client(server.bridge, cert=cert, key=key, ca=ca, read_url=server.read, **kw)


class _Flaky(httpx.BaseTransport):
    """The real transport, but the first ``drops`` answers are lost and ``busy`` tries get 429."""

    def __init__(self, prepared: Prepared, *, drops: int = 0, busy: int = 0) -> None:
        self.inner = httpx.HTTPTransport(verify=client_ssl_context(*prepared.client()))
        self.drops, self.busy = drops, busy
        self.keys: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.keys.append(request.headers.get("idempotency-key"))
        if self.busy:
            self.busy -= 1
            headers = {"Retry-After": "0", "Content-Type": "application/problem+json"}
            return httpx.Response(429, headers=headers, content=_QUEUE_FULL)
        response = self.inner.handle_request(request)
        response.read()
        if self.drops:
            self.drops -= 1
            response.close()
            raise httpx.ReadError("the connection dropped after the server answered")
        return response

    def close(self) -> None:
        self.inner.close()


def _entries_with(data_dir: Path, needle: str) -> int:
    """How many log entries hold ``needle`` (read after the server stopped)."""
    with SOP.boot(data_dir) as sop:
        log = sop.store.log
        return len(log.log_entries_containing(0, log.log_size(), [needle.encode()]))


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[tuple[Prepared, Served]]:
    """A server of its own, to read its log after it stops."""
    prepared = prepare(tmp_path)
    server = Served(prepared.data_dir, _NO_ADMIN)
    yield prepared, server
    server.stop()


# ---- decisions ---------------------------------------------------------------------------
def test_allow_and_deny_are_both_decisions(prepared: Prepared, remote: Served) -> None:
    with _client(prepared, remote) as client:
        allowed = client.decide(request(prepared.token, 1))
        denied = client.decide(request(prepared.token, 2, allow=False))
    assert allowed.effect is Permission.ALLOW and allowed.allowed
    assert allowed.log_index is not None and allowed.receipt is not None
    assert allowed.policy_ids == ("drac-persists-its-artifacts",)
    assert denied.effect is Permission.DENY and denied.reasons
    assert denied.log_index is not None and denied.log_index != allowed.log_index


def test_submit_takes_what_sop_submit_takes(prepared: Prepared, remote: Served) -> None:
    parsed = parse_request(request(prepared.token, 3))  # a Request carries its token
    with _client(prepared, remote) as client:
        assert client.submit(parsed).allowed
        assert client.submit(orjson.dumps(request(prepared.token, 4)).decode()).allowed
        # SOP.submit answers a malformed request with its logged DENY, and so does a client
        malformed = client.submit({"request_id": "r-x"})
    assert malformed.effect is Permission.DENY and malformed.log_index is not None


def test_a_bad_request_raises_with_its_code_and_logged_decision(
    prepared: Prepared, remote: Served
) -> None:
    with _client(prepared, remote) as client, pytest.raises(RemoteError) as caught:
        client.decide({"request_id": "r-bad", "principal": "drac"})
    err = caught.value
    assert (err.status, err.code, err.stage) == (400, "bad_request", "schema")
    assert err.decision is not None and err.decision.effect is Permission.DENY
    assert err.decision.log_index is not None
    assert err.decision.reasons[0].stage == "schema"


def test_a_batch_answers_each_request_in_order(prepared: Prepared, remote: Served) -> None:
    batch = [request(prepared.token, 5), request(prepared.token, 6, allow=False)]
    with _client(prepared, remote) as client:
        first, second = client.decide_batch(batch)
    assert (first.effect, second.effect) == (Permission.ALLOW, Permission.DENY)
    assert (first.request_id, second.request_id) == ("r-5", "r-6")


def test_an_authzen_evaluation_is_a_logged_decision(prepared: Prepared, remote: Served) -> None:
    with _client(prepared, remote) as client:
        yes, allow = client.evaluate(
            "drac",
            "artifact.persist",
            "artifacts/drac/e.bin",
            {"size_bytes": 5},
            capability=prepared.token,
        )
        no, deny = client.evaluate("drac", "artifact.persist", "artifacts/emp/e.bin", {})
    assert yes and allow.allowed and allow.log_index is not None
    assert not no and deny.effect is Permission.DENY


# ---- the read plane ------------------------------------------------------------------------
def test_a_receipt_fetched_remotely_verifies_offline(prepared: Prepared, remote: Served) -> None:
    with _client(prepared, remote) as client:
        decision = client.decide(request(prepared.token, 7))
        assert decision.log_index is not None and decision.receipt is not None
        text = client.receipt(decision.log_index)
        ready = client.ready()
    verified = verify_receipt(
        text, [Verifier.from_string(remote.vkey)], expected_leaf=decision.receipt.leaf_hash
    )
    assert verified.index == decision.log_index
    assert ready["ready"] is True


def test_a_receipt_beyond_the_log_is_a_remote_error(prepared: Prepared, remote: Served) -> None:
    with _client(prepared, remote) as client, pytest.raises(RemoteError) as caught:
        client.receipt(10**9)
    assert (caught.value.status, caught.value.code) == (404, "not_in_log")


# ---- retries -------------------------------------------------------------------------------
def test_a_retry_after_a_lost_answer_reuses_the_key_and_decides_once(
    fresh: tuple[Prepared, Served],
) -> None:
    prepared, server = fresh
    flaky = _Flaky(prepared, drops=1)
    with _client(prepared, server, transport=flaky, max_wait=0.01) as client:
        decision = client.decide(request(prepared.token, 4242))
    assert decision.allowed
    assert len(flaky.keys) == 2 and flaky.keys[0] is not None
    assert flaky.keys[0] == flaky.keys[1]
    assert server.stop() == 0, server.stderr()
    assert _entries_with(prepared.data_dir, "obj-4242.bin") == 1  # one decision, not two
    assert _entries_with(prepared.data_dir, flaky.keys[0]) == 1


def test_a_429_is_retried_with_the_same_key(fresh: tuple[Prepared, Served]) -> None:
    prepared, server = fresh
    flaky = _Flaky(prepared, busy=2)
    with _client(prepared, server, transport=flaky) as client:
        decision = client.decide(request(prepared.token, 4343), idempotency_key="mine-1")
    assert decision.allowed
    assert flaky.keys == ["mine-1"] * 3
    assert server.stop() == 0, server.stderr()
    assert _entries_with(prepared.data_dir, "obj-4343.bin") == 1
    assert _entries_with(prepared.data_dir, "mine-1") == 1


def test_retries_end_in_a_remote_error(prepared: Prepared, remote: Served) -> None:
    flaky = _Flaky(prepared, busy=5)
    client = _client(prepared, remote, transport=flaky, retries=2)
    with client, pytest.raises(RemoteError) as caught:
        client.decide(request(prepared.token, 8))
    assert (caught.value.status, caught.value.code) == (429, "queue_full")
    assert len(flaky.keys) == 3


def test_an_evaluation_is_never_sent_twice_once_it_may_have_been_decided(
    prepared: Prepared, remote: Served
) -> None:
    # the AuthZEN endpoints replay no key: a second try could be a second decision
    flaky = _Flaky(prepared, drops=1)
    client = _client(prepared, remote, transport=flaky)
    with client, pytest.raises(RemoteError) as caught:
        client.evaluate("drac", "artifact.persist", "artifacts/drac/x", {})
    assert caught.value.code == "unreachable" and len(flaky.keys) == 1


def test_an_unreachable_server_is_a_remote_error(prepared: Prepared) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cert, key, ca = prepared.client()
    url = f"https://127.0.0.1:{port}"
    client = Client(url, cert=cert, key=key, ca=ca, retries=1, max_wait=0.01)
    with client, pytest.raises(RemoteError) as caught:
        client.decide(request(prepared.token, 9))
    assert (caught.value.status, caught.value.code) == (None, "unreachable")


# ---- asyncio -------------------------------------------------------------------------------
class _AsyncBusy(httpx.AsyncBaseTransport):
    """The real async transport; the first ``busy`` tries get 429."""

    def __init__(self, prepared: Prepared, busy: int) -> None:
        self.inner = httpx.AsyncHTTPTransport(verify=client_ssl_context(*prepared.client()))
        self.busy = busy
        self.keys: list[str | None] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.keys.append(request.headers.get("idempotency-key"))
        if self.busy:
            self.busy -= 1
            headers = {"Retry-After": "0", "Content-Type": "application/problem+json"}
            return httpx.Response(429, headers=headers, content=_QUEUE_FULL)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_the_async_client_decides_concurrently(prepared: Prepared, remote: Served) -> None:
    cert, key, ca = prepared.client()
    busy = _AsyncBusy(prepared, busy=1)

    async def run() -> tuple[list[Permission], str]:
        async with AsyncClient(
            remote.bridge, cert=cert, key=key, ca=ca, read_url=remote.read, transport=busy
        ) as client:
            calls = [
                client.decide(request(prepared.token, 100 + i, allow=i % 2 == 0)) for i in range(4)
            ]
            decisions = await asyncio.gather(*calls)
            with pytest.raises(RemoteError) as caught:
                await client.decide({"request_id": "r-async-bad"})
            assert caught.value.code == "bad_request" and caught.value.decision is not None
            first = decisions[0]
            assert first.log_index is not None
            text = await client.receipt(first.log_index)
            return [d.effect for d in decisions], text

    effects, text = asyncio.run(run())
    assert effects == [Permission.ALLOW, Permission.DENY] * 2
    assert len(set(busy.keys)) == 5 and len(busy.keys) == 6  # 5 calls, one of them tried twice
    verify_receipt(text, [Verifier.from_string(remote.vkey)])
