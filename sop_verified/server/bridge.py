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
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as HTTPRequest
from starlette.responses import Response
from starlette.routing import Route

from sop_verified.core.persistence.logged import authenticated_entry
from sop_verified.core.request import MAX_REQUEST_BYTES, Decision, Request, parse_request
from sop_verified.core.transport import Transport
from sop_verified.errors import InputError, SOPError
from sop_verified.server import authzen
from sop_verified.server.decisions import QueueClosedError, QueueFullError
from sop_verified.server.idempotency import (
    Answer,
    KeyInFlightError,
    KeyReusedError,
    check_replay,
)
from sop_verified.server.problems import problem
from sop_verified.server.state import ServerState, authenticated_principal
from sop_verified.tools.canonical import canonical_json
from sop_verified.tools.strict_json import loads_unique_keys

__all__ = ["MAX_BATCH", "bridge_routes"]

MAX_BATCH = 64
_JSON = "application/json"
_MAX_BODY = MAX_REQUEST_BYTES * MAX_BATCH + 4096
_Handler = Callable[[HTTPRequest], Awaitable[Response]]


class _RefusedError(Exception):
    """A request refused before any decision: answered with ``response``."""

    def __init__(self, response: Response) -> None:
        self.response = response


def _json(value: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status_code=status, media_type=_JSON)


async def _body(request: HTTPRequest, limit: int) -> bytes:
    """The body, read chunk by chunk and refused (413) as soon as it passes ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _RefusedError(_too_large(int(declared), limit))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _RefusedError(_too_large(size, limit))
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> Response:
    return problem(413, "body_too_large", f"the body has more than {limit} bytes ({size} seen)")


def _parse_json(body: bytes) -> Any:
    try:
        return loads_unique_keys(body)
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise InputError(f"the body is not JSON: {str(exc)[:200]}") from None


class _Bridge:
    """The handlers over one :class:`ServerState`."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    # ---- what every handler does first ------------------------------------------------
    def _principal(self, request: HTTPRequest) -> str | None:
        try:
            principal = authenticated_principal(request.scope)
        except SOPError as exc:
            raise _RefusedError(problem(403, "no_principal", str(exc))) from None
        if principal is None and not self.state.unsafe_no_tls:
            raise _RefusedError(
                problem(401, "no_client_certificate", "a client certificate is required")
            )
        return principal

    def _transport(self, request: HTTPRequest, principal: str | None) -> Transport:
        key = request.headers.get("idempotency-key")
        trace = Transport.trace_or_none(request.headers.get("traceparent"))
        try:
            return Transport(principal, idempotency_key=key, traceparent=trace)
        except ValueError as exc:
            raise _RefusedError(problem(400, "bad_idempotency_key", str(exc))) from None

    def _refuse_when_stopping(self) -> None:
        if self.state.stopping:
            raise _RefusedError(
                problem(503, "stopping", "the server is stopping", headers={"Retry-After": "1"})
            )

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
            raise _RefusedError(
                problem(429, "queue_full", str(exc), headers={"Retry-After": "1"})
            ) from None
        except QueueClosedError as exc:
            raise _RefusedError(
                problem(503, "stopping", str(exc), headers={"Retry-After": "1"})
            ) from None

    def _decision_response(self, decision: Decision) -> Response:
        if decision.reasons and decision.reasons[0].code == "not_ready":
            return problem(
                503,
                "not_ready",
                decision.reasons[0].message,
                stage="health",
                headers={"Retry-After": "1"},
                decision=decision.to_dict(),
            )
        return _json(decision.to_dict())

    # ---- idempotency --------------------------------------------------------------------
    async def _idempotent(
        self,
        transport: Transport,
        fingerprint: dict[str, Any],
        run: Callable[[], Awaitable[tuple[Response, int | None]]],
        shape: Callable[[dict[str, Any]], Any] = lambda decision: decision,
    ) -> Response:
        """Run ``run`` once per idempotency key; a retry gets the first answer.

        Args:
            transport: the call's transport (its principal owns the key).
            fingerprint: what the key was first used for (a reuse for anything else is 422).
            run: carries the call out; returns the response and the decision's log index.
            shape: the endpoint's answer for a decision replayed from the log.
        """
        key = transport.idempotency_key
        if key is None:
            return (await run())[0]
        owner = transport.principal or "-"
        digest = hashlib.sha256(canonical_json(fingerprint)).hexdigest()
        keys = self.state.keys
        try:
            first = keys.begin(owner, key, digest)
        except KeyInFlightError as exc:
            return problem(409, "idempotency_key_in_flight", str(exc))
        except KeyReusedError as exc:
            return problem(422, "idempotency_key_reused", str(exc))
        if isinstance(first, Answer):
            return Response(first.body, status_code=first.status, media_type=first.media_type)
        if isinstance(first, int):
            replayed = await self._first_decision(first, transport, fingerprint)
            return replayed if isinstance(replayed, Response) else _json(shape(replayed))
        try:
            response, index = await run()
        except BaseException:
            keys.abandon(owner, key)
            raise
        if response.status_code in (429, 503) or index is None:
            keys.abandon(owner, key)  # nothing was decided: a retry runs it
        else:
            answer = Answer(
                response.status_code, response.media_type or _JSON, bytes(response.body)
            )
            keys.finish(owner, key, answer, index)
        return response

    async def _first_decision(
        self, index: int, transport: Transport, fingerprint: dict[str, Any]
    ) -> dict[str, Any] | Response:
        """The decision first made with the transport's key, read from the log (a restart)."""
        owner, key = transport.principal or "-", transport.idempotency_key or ""
        sop = self.state.sop
        try:
            entry = await run_in_threadpool(
                authenticated_entry, sop.store.log, index, what="the idempotent call's decision"
            )
            check_replay(entry, owner, key, fingerprint)
        except KeyReusedError as exc:
            return problem(422, "idempotency_key_reused", str(exc))
        except SOPError as exc:
            return problem(503, "integrity", f"the first answer cannot be replayed: {exc}")
        return _replayed(entry, index, sop)

    # ---- the endpoints -----------------------------------------------------------------
    async def decide(self, request: HTTPRequest) -> Response:
        started = time.perf_counter()
        principal = self._principal(request)
        self._refuse_when_stopping()
        transport = self._transport(request, principal)
        body = await _body(request, MAX_REQUEST_BYTES)
        try:
            parsed = parse_request(_object(_parse_json(body)))
        except InputError as exc:
            return await self._logged_malformed(body, exc)
        req = parsed.via(transport)

        async def run() -> tuple[Response, int | None]:
            decision = await self._decide(req)
            self.state.metrics.observe(decision, "decide", started)
            return self._decision_response(decision), decision.log_index

        return await self._idempotent(transport, req.to_dict(), run)

    async def decide_batch(self, request: HTTPRequest) -> Response:
        started = time.perf_counter()
        principal = self._principal(request)
        self._refuse_when_stopping()
        transport = self._transport(request, principal)
        body = await _body(request, _MAX_BODY)
        try:
            items = _batch_items(_parse_json(body))
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
            return _json({"results": results}), first

        return await self._idempotent(transport, {"batch": items}, run)

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
            replayed = await self._first_decision(logged, said, parsed.to_dict())
            if isinstance(replayed, Response):
                return orjson.loads(bytes(replayed.body))  # type: ignore[no-any-return]
            return replayed
        decision = await self._decide(parsed)
        self.state.metrics.observe(decision, endpoint, started)
        if key is not None and decision.log_index is not None:
            self.state.keys.remember(owner, key, decision.log_index)
        return decision.to_dict()

    async def evaluation(self, request: HTTPRequest) -> Response:
        started = time.perf_counter()
        principal = self._principal(request)
        self._refuse_when_stopping()
        transport = self._transport(request, principal)
        body = await _body(request, MAX_REQUEST_BYTES)
        try:
            raw = authzen.to_request(_object(_parse_json(body)), default_id=_body_id(body))
            req = parse_request(raw).via(transport)
        except InputError as exc:
            return problem(400, "bad_request", str(exc), stage="schema")

        async def run() -> tuple[Response, int | None]:
            decision = await self._decide(req)
            self.state.metrics.observe(decision, "authzen", started)
            return _json(authzen.answer(decision)), decision.log_index

        return await self._idempotent(transport, req.to_dict(), run, authzen.answer_from_json)

    async def evaluations(self, request: HTTPRequest) -> Response:
        started = time.perf_counter()
        principal = self._principal(request)
        self._refuse_when_stopping()
        transport = self._transport(request, principal)
        body = await _body(request, _MAX_BODY)
        try:
            items, semantic = authzen.evaluations(_object(_parse_json(body)))
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
            return _json({"evaluations": answers}), first

        fingerprint = {"evaluations": [r.to_dict() for r in reqs], "semantic": semantic}
        return await self._idempotent(transport, fingerprint, run)


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


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(
            f"the body must be a JSON object, got `{type(value).__name__}`", accepted="an object"
        )
    return value


def _batch_items(value: Any) -> list[Any]:
    items = _object(value).get("requests")
    if set(value) != {"requests"} or not isinstance(items, list):
        raise InputError('the body must be `{"requests": [...]}`', where="requests")
    if not 1 <= len(items) <= MAX_BATCH:
        raise InputError(
            f"the batch holds {len(items)} requests", where="requests", accepted=f"1 to {MAX_BATCH}"
        )
    return items


def _replayed(entry: dict[str, Any], index: int, sop: Any) -> dict[str, Any]:
    """The first answer, as the log holds it (a retry after a restart)."""
    payload = canonical_json(entry)
    tlog = sop.log
    checkpoint = tlog.checkpoint
    return {
        "version": 1,
        "effect": entry.get("effect"),
        "request_id": (entry.get("request") or {}).get("request_id"),
        "capability_id": entry.get("capability_id"),
        "policy_ids": entry.get("policy_ids", []),
        "reasons": entry.get("reasons", []),
        "log_index": index,
        "receipt": {
            "index": index,
            "leaf_hash": hashlib.sha256(b"\x00" + payload).hexdigest(),
            "tree_size": checkpoint.size if checkpoint else tlog.size,
            "checkpoint": tlog.checkpoint_note,
        },
        "entry_digest": "sha256:" + hashlib.sha256(payload).hexdigest(),
        "replayed": True,
    }


def _guard(handler: _Handler) -> _Handler:
    async def run(request: HTTPRequest) -> Response:
        try:
            return await handler(request)
        except _RefusedError as refused:
            return refused.response

    return run


def bridge_routes(state: ServerState) -> list[Route]:
    """The bridge plane's routes over ``state``."""
    b = _Bridge(state)
    return [
        Route("/v1/decide", _guard(b.decide), methods=["POST"]),
        Route("/v1/decide/batch", _guard(b.decide_batch), methods=["POST"]),
        Route("/access/v1/evaluation", _guard(b.evaluation), methods=["POST"]),
        Route("/access/v1/evaluations", _guard(b.evaluations), methods=["POST"]),
    ]
