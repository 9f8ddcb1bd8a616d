"""The protocol operations on the bridge plane: persisted bytes and the DRAC, EMP, CSP facades.

Every call is an ordinary SOP decision (capability, policy, obligations,
logged with its receipt before any effect) made for the client
certificate's principal: the transport (principal, ``Idempotency-Key``,
``traceparent``) rides on the request, so a body or facade naming another
principal is refused ``principal_mismatch`` and the entry records who called.

``POST /v1/persist``
    The SOP request JSON in the ``SOP-Request`` header (base64url, padding
    optional), the bytes as the ``application/octet-stream`` body. The body is
    read chunk by chunk and refused with 413 as soon as it passes the limit
    of the resource's scope (``max_blob_bytes``; the largest scope's for a
    resource no scope serves, which SOP then denies): nothing is decided,
    logged or written. Then ``sop.persist_async``; the answer is the decision
    JSON (with ``write`` on ALLOW), 200 for ALLOW and DENY alike, as for
    ``/v1/decide``.
``POST /v1/read``
    The read request JSON; on ALLOW the verified bytes
    (``application/octet-stream``) with the decision's log index
    (``SOP-Log-Index``), the content digest (``SOP-Content-Digest`` and RFC
    9530 ``Repr-Digest``) and the whole decision (``SOP-Decision``, base64url
    JSON); on DENY a 403 problem ``denied`` carrying the decision.
``POST /v1/{drac,emp,csp}/<method>``
    One per facade method (:mod:`.protocol_calls`), a JSON body mirroring its
    parameters, the facade's answer as JSON.

State-changing calls honour ``Idempotency-Key`` as ``/v1/decide`` does
(:class:`~.edge.Edge`); a protocol call is the same call when its body has
the same bytes. Its request id, when the body names none, is derived from
the principal, the key and the body's digest, so a retry after a restart is
matched to its logged decision by that id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Callable
from typing import Any, cast

import orjson
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as HTTPRequest
from starlette.responses import Response
from starlette.routing import Route

from sop_verified.core.health import Health
from sop_verified.core.request import MAX_REQUEST_BYTES, Decision, Request, parse_request
from sop_verified.errors import InputError, ProtocolError, SOPError
from sop_verified.nexus.persistence import bind_content
from sop_verified.server.edge import (
    Edge,
    RefusedError,
    decision_index,
    decision_response,
    guard,
    json_object,
    json_response,
    parse_json,
    read_body,
)
from sop_verified.server.problems import problem
from sop_verified.server.protocol_calls import CALLS, Call
from sop_verified.server.replay_effect import with_effect
from sop_verified.server.state import ServerState

__all__ = ["REQUEST_HEADER", "operation_routes"]

REQUEST_HEADER = "SOP-Request"
"""The header carrying a persist's request JSON (base64url)."""

_OCTETS = "application/octet-stream"
_MAX_HEADER = (MAX_REQUEST_BYTES * 4) // 3 + 4
_MAX_CALL_BODY = 24 * 1024 * 1024
"""A protocol call's JSON body: a 16 MiB blob in base64 and its parameters."""


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 4648 §5) of ``data``."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _from_b64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InputError(f"`{REQUEST_HEADER}` is not base64url", accepted="RFC 4648 §5") from None


def _not_ready(decision: Decision) -> bool:
    return bool(decision.reasons) and decision.reasons[0].code == "not_ready"


class _Operations(Edge):
    """The handlers of the persist, read and protocol endpoints."""

    def _request_header(self, request: HTTPRequest) -> dict[str, Any]:
        text = request.headers.get(REQUEST_HEADER)
        if text is None:
            raise RefusedError(
                problem(400, "bad_request", f"the `{REQUEST_HEADER}` header is required")
            )
        if len(text) > _MAX_HEADER:
            raise RefusedError(
                problem(400, "bad_request", f"`{REQUEST_HEADER}` has more than {_MAX_HEADER} chars")
            )
        try:
            return json_object(parse_json(_from_b64url(text.strip())))
        except InputError as exc:
            raise RefusedError(problem(400, "bad_request", str(exc), stage="schema")) from None

    def _scope_limit(self, resource: str) -> int:
        """The most bytes a persist of ``resource`` may carry (its scope's ``max_blob_bytes``)."""
        try:
            table = self.state.sop.config.scope_table()
        except SOPError:  # not booted: SOP denies the request whatever it carries
            return MAX_REQUEST_BYTES
        found = table.locate(resource)
        if found is not None:
            return found[0].max_blob_bytes
        return max((s.max_blob_bytes for s in table), default=0)

    async def _malformed(self, raw: dict[str, Any], exc: InputError) -> Response:
        decision = await run_in_threadpool(self.state.sop.submit, raw)
        self.state.metrics.observe(decision, "malformed", time.perf_counter())
        return problem(400, "bad_request", str(exc), stage="schema", decision=decision.to_dict())

    async def persist(self, request: HTTPRequest) -> Response:
        started = time.perf_counter()
        transport = self.caller(request)
        raw = self._request_header(request)
        try:
            parsed = parse_request(raw)
        except InputError as exc:
            return await self._malformed(raw, exc)
        data = await read_body(request, self._scope_limit(parsed.resource))  # 413 while reading
        req = cast(Request, bind_content(parsed, data)).via(transport)  # a Request stays one

        async def run() -> tuple[Response, int | None]:
            decision = await self.state.sop.persist_async(req, data)
            self.state.metrics.observe(decision, "persist", started)
            return decision_response(decision), decision_index(decision)

        sop = self.state.sop
        return await self.idempotent(
            transport, req.to_dict(), run, complete=lambda decision: with_effect(decision, sop)
        )

    async def read(self, request: HTTPRequest) -> Response:
        started = time.perf_counter()
        transport, body = await self.opened(request, MAX_REQUEST_BYTES)
        try:
            raw = json_object(parse_json(body))
        except InputError as exc:
            return problem(400, "bad_request", str(exc), stage="schema")
        try:
            req = parse_request(raw).via(transport)
        except InputError as exc:
            return await self._malformed(raw, exc)
        result = await run_in_threadpool(self.state.sop.read, req)
        decision = result.decision
        self.state.metrics.observe(decision, "read", started)
        if _not_ready(decision):
            return decision_response(decision)
        if not result.allowed or result.data is None:
            detail = decision.reasons[0].message if decision.reasons else "the read was denied"
            return problem(403, "denied", detail, decision=decision.to_dict())
        digest = hashlib.sha256(result.data).digest()
        headers = {
            "SOP-Log-Index": str(decision.log_index),
            "SOP-Content-Digest": "sha256:" + digest.hex(),
            "Repr-Digest": f"sha-256=:{base64.b64encode(digest).decode()}:",
            "SOP-Decision": b64url(orjson.dumps(decision.to_dict())),
        }
        return Response(result.data, media_type=_OCTETS, headers=headers)

    async def call(self, call: Call, request: HTTPRequest) -> Response:
        started = time.perf_counter()
        transport, raw = await self.opened(request, _MAX_CALL_BODY)
        try:
            fields = json_object(parse_json(raw))
            body = call.body.model_validate(fields)
        except InputError as exc:
            return problem(400, "bad_request", str(exc), stage="schema")
        except ValidationError as exc:
            return problem(400, "bad_request", _first_error(exc), stage="schema")
        key = transport.idempotency_key
        sent = hashlib.sha256(raw).hexdigest()  # the retry sends the same bytes (any JSON numbers)
        if key is not None and body.request_id is None:  # a retry after a restart finds its id
            seed = f"{transport.principal or '-'}\n{key}\n{sent}".encode()
            derived = f"{call.protocol}-{hashlib.sha256(seed).hexdigest()[:16]}"
            body = body.model_copy(update={"request_id": derived})
        rid = body.request_id

        async def run() -> tuple[Response, int | None]:
            try:
                answer, decision = await run_in_threadpool(
                    call.invoke, self.state.sop, body, transport
                )
            except (SOPError, ValidationError) as exc:
                return self._refused_call(exc), None
            self.state.metrics.observe(decision, f"{call.protocol}.{call.method}", started)
            if _not_ready(decision):
                return decision_response(decision), None
            return json_response(answer), decision_index(decision)

        if not call.changes_state:
            return (await run())[0]
        return await self.idempotent(
            transport,
            {"call": call.path, "body_sha256": sent},
            run,
            _shape(call),
            logged=lambda logged: logged.get("request_id") == rid,
        )

    def _refused_call(self, exc: SOPError | ValidationError) -> Response:
        if self.state.sop.health is not Health.READY:
            return problem(
                503, "not_ready", f"SOP is `{self.state.sop.health}`", headers={"Retry-After": "1"}
            )
        if isinstance(exc, ValidationError):
            return problem(400, "bad_request", _first_error(exc), stage="schema")
        code = exc.code if isinstance(exc, ProtocolError) else "bad_request"
        return problem(400, code, str(exc), stage="protocol")


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "body"
    return f"{str(err['msg']).removeprefix('Value error, ')}; at `{where}`"


def _shape(call: Call) -> Callable[[dict[str, Any]], Any]:
    """How a decision replayed from the log is shaped for ``call``'s answer."""
    if call.method == "submit_obligation":
        return lambda decision: {"decision": decision, "verdict": None}
    return lambda decision: decision


def operation_routes(state: ServerState) -> list[Route]:
    """The protocol operations' routes on the bridge plane, over ``state``."""
    ops = _Operations(state)
    routes = [
        Route("/v1/persist", guard(ops.persist), methods=["POST"]),
        Route("/v1/read", guard(ops.read), methods=["POST"]),
    ]
    for call in CALLS:

        async def handle(request: HTTPRequest, call: Call = call) -> Response:
            return await ops.call(call, request)

        routes.append(Route(call.path, guard(handle), methods=["POST"]))
    return routes
