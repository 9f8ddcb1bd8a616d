"""The bridge plane: decisions over HTTP for DRAC, EMP and CSP (mutual TLS).

``POST /v1/decide`` (one request in SOP's schema), ``POST /v1/decide/batch``
(up to 64) and the AuthZEN evaluation endpoints (:mod:`.authzen`). Every
request is decided by the kernel and logged before it is answered; every
answer that is not a decision is an RFC 9457 problem (:mod:`.problems`).

What a handler does, in order: authenticate (the client certificate's
principal), read the body within its limit (413), parse it strictly
(duplicate keys refused; a malformed request is still decided, as a logged
DENY, and answered 400 with that decision), attach the transport's facts
(principal, ``Idempotency-Key``, ``traceparent``), replay a known key, queue
the request for the decision thread (429 when the queue is full), answer.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as HTTPRequest
from starlette.responses import Response
from starlette.routing import Route

from sop_verified.core.request import MAX_REQUEST_BYTES, Decision, Request, parse_request
from sop_verified.core.transport import Transport
from sop_verified.errors import InputError
from sop_verified.server import authzen
from sop_verified.server.decisions import QueueClosedError, QueueFullError
from sop_verified.server.edge import (
    Edge,
    RefusedError,
    decision_response,
    guard,
    json_object,
    json_response,
    parse_json,
)
from sop_verified.server.problems import problem
from sop_verified.server.state import ServerState

__all__ = ["MAX_BATCH", "bridge_routes"]

MAX_BATCH = 64
_MAX_BODY = MAX_REQUEST_BYTES * MAX_BATCH + 4096


class _Bridge(Edge):
    """The handlers over one :class:`ServerState`."""

    async def _logged_malformed(self, raw: bytes | dict[str, Any], exc: InputError) -> Response:
        """A malformed request is still a logged DENY: answer 400 with that decision."""
        decision = await run_in_threadpool(self.state.sop.submit, raw)
        self.state.metrics.observe(decision, "malformed", time.perf_counter())
        return problem(400, "bad_request", str(exc), stage="schema", decision=decision.to_dict())

    async def _decide(self, request: Request) -> Decision:
        try:
            return await self.state.queue.decide(request)
        except QueueFullError as exc:
            self.state.metrics.rejected.labels("queue_full").inc()
            raise RefusedError(
                problem(429, "queue_full", str(exc), headers={"Retry-After": "1"})
            ) from None
        except QueueClosedError as exc:
            raise RefusedError(
                problem(503, "stopping", str(exc), headers={"Retry-After": "1"})
            ) from None

    # ---- the endpoints -----------------------------------------------------------------
    async def decide(self, request: HTTPRequest) -> Response:
        started = time.perf_counter()
        transport, body = await self.opened(request, MAX_REQUEST_BYTES)
        try:
            parsed = parse_request(json_object(parse_json(body)))
        except InputError as exc:
            return await self._logged_malformed(body, exc)
        req = parsed.via(transport)

        async def run() -> tuple[Response, int | None]:
            decision = await self._decide(req)
            self.state.metrics.observe(decision, "decide", started)
            return decision_response(decision), decision.log_index

        return await self.idempotent(transport, req.to_dict(), run)

    async def decide_batch(self, request: HTTPRequest) -> Response:
        started = time.perf_counter()
        transport, body = await self.opened(request, _MAX_BODY)
        try:
            items = _batch_items(parse_json(body))
        except InputError as exc:
            return problem(400, "bad_request", str(exc), stage="schema")
        parsed: list[Request | InputError] = []
        for i, item in enumerate(items):
            try:
                parsed.append(parse_request(item).via(_item_transport(transport, i)))
            except InputError as exc:
                parsed.append(exc)

        async def run() -> tuple[Response, int | None]:
            results = [
                await self._one_of_batch(item, p, started, "decide_batch")
                for item, p in zip(items, parsed, strict=True)
            ]
            first = next((r["log_index"] for r in results if r.get("log_index") is not None), None)
            return json_response({"results": results}), first

        # the body's bytes, not its items: an item may hold what no JSON encoder takes back
        fingerprint = {"batch_sha256": hashlib.sha256(body).hexdigest()}
        return await self.idempotent(transport, fingerprint, run)

    async def _one_of_batch(
        self, raw: Any, parsed: Request | InputError, started: float, endpoint: str
    ) -> dict[str, Any]:
        """One item of a batch: its decision (replayed from the log if its key was used)."""
        if isinstance(parsed, InputError):
            decision = await run_in_threadpool(self.state.sop.submit, raw)
            self.state.metrics.observe(decision, endpoint, started)
            return decision.to_dict()
        said = parsed.transport
        key = said.idempotency_key if said else None
        owner = (said.principal if said else None) or "-"
        logged = None if key is None else self.state.keys.logged(owner, key)
        if logged is not None and said is not None:  # decided before a restart: replay it
            return await self._item_from_log(logged, said, parsed)
        decision = await self._decide(parsed)
        self.state.metrics.observe(decision, endpoint, started)
        if key is not None and decision.log_index is not None:
            self.state.keys.remember(owner, key, decision.log_index)
        decided = None
        if key is not None and decision.log_index is None:
            decided = self.state.keys.logged(owner, key)
        if decided is not None and said is not None:  # another replica logged it meanwhile
            return await self._item_from_log(decided, said, parsed)
        return decision.to_dict()

    async def _item_from_log(self, index: int, said: Transport, parsed: Request) -> dict[str, Any]:
        """A batch item's answer: the key's first decision, the log's entry at ``index``."""
        replayed = await self.first_decision(index, said, parsed.to_dict())
        if isinstance(replayed, Response):
            return orjson.loads(bytes(replayed.body))  # type: ignore[no-any-return]
        return replayed

    async def evaluation(self, request: HTTPRequest) -> Response:
        started = time.perf_counter()
        transport, body = await self.opened(request, MAX_REQUEST_BYTES)
        try:
            raw = authzen.to_request(json_object(parse_json(body)), default_id=_body_id(body))
            req = parse_request(raw).via(transport)
        except InputError as exc:
            return problem(400, "bad_request", str(exc), stage="schema")

        async def run() -> tuple[Response, int | None]:
            decision = await self._decide(req)
            self.state.metrics.observe(decision, "authzen", started)
            return json_response(authzen.answer(decision)), decision.log_index

        return await self.idempotent(transport, req.to_dict(), run, authzen.answer_from_json)

    async def evaluations(self, request: HTTPRequest) -> Response:
        started = time.perf_counter()
        transport, body = await self.opened(request, _MAX_BODY)
        try:
            items, semantic = authzen.evaluations(json_object(parse_json(body)))
            reqs = [
                parse_request(
                    authzen.to_request(
                        item, f"evaluations[{i}]", default_id=f"{_body_id(body)}-{i}"
                    )
                ).via(_item_transport(transport, i))
                for i, item in enumerate(items)
            ]
        except InputError as exc:
            return problem(400, "bad_request", str(exc), stage="schema")

        async def run() -> tuple[Response, int | None]:
            answers = []
            first: int | None = None
            for req in reqs:
                decided = await self._one_of_batch(req, req, started, "authzen")
                first = decided["log_index"] if first is None else first
                answers.append(authzen.answer_from_json(decided))
                if authzen.stops_after_json(decided, semantic):
                    break
            return json_response({"evaluations": answers}), first

        fingerprint = {"evaluations": [r.to_dict() for r in reqs], "semantic": semantic}
        return await self.idempotent(transport, fingerprint, run)


def _item_transport(transport: Transport, i: int) -> Transport:
    """Item ``i`` of a batch: the call's key with ``.i`` appended, so each item has its own."""
    key = transport.idempotency_key
    return Transport(
        transport.principal,
        idempotency_key=None if key is None else f"{key[:240]}.{i}",
        traceparent=transport.traceparent,
    )


def _body_id(body: bytes) -> str:
    """A request id for an AuthZEN body that names none: the same body, the same id."""
    return "authzen-" + hashlib.sha256(body).hexdigest()[:24]


def _batch_items(value: Any) -> list[Any]:
    items = json_object(value).get("requests")
    if set(value) != {"requests"} or not isinstance(items, list):
        raise InputError('the body must be `{"requests": [...]}`', where="requests")
    if not 1 <= len(items) <= MAX_BATCH:
        raise InputError(
            f"the batch holds {len(items)} requests", where="requests", accepted=f"1 to {MAX_BATCH}"
        )
    return items


def bridge_routes(state: ServerState) -> list[Route]:
    """The bridge plane's routes over ``state``."""
    b = _Bridge(state)
    return [
        Route("/v1/decide", guard(b.decide), methods=["POST"]),
        Route("/v1/decide/batch", guard(b.decide_batch), methods=["POST"]),
        Route("/access/v1/evaluation", guard(b.evaluation), methods=["POST"]),
        Route("/access/v1/evaluations", guard(b.evaluations), methods=["POST"]),
    ]
