"""The OpenAPI 3.1 document of the bridge and read planes (served, and committed in docs/).

Built from SOP's own schema of record: the request schema is pydantic's
(:class:`~sop_verified.core.request.Request`, strict, no extra keys); the
decision's form is docs/DECISION_JSON.md. ``tests/server/test_openapi.py``
holds docs/openapi.json equal to :func:`openapi_document`.
"""

from __future__ import annotations

from typing import Any

from sop_verified.core.request import Request
from sop_verified.server.protocol_calls import CALLS

__all__ = ["openapi_document"]

_REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _problem_response(why: str) -> dict[str, Any]:
    return {
        "description": why,
        "content": {"application/problem+json": {"schema": _ref("Problem")}},
    }


def _json_response(why: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": why, "content": {"application/json": {"schema": schema}}}


_HEADERS = [
    {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "A retry with the same key gets the first answer; nothing is decided twice.",
        "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
    },
    {
        "name": "traceparent",
        "in": "header",
        "required": False,
        "description": "W3C Trace Context; recorded in the decision's log entry when well formed.",
        "schema": {"type": "string"},
    },
]

_REFUSALS = {
    "400": _problem_response("malformed body (a malformed request is still a logged DENY)"),
    "401": _problem_response("no client certificate"),
    "403": _problem_response("the client certificate names no principal"),
    "409": _problem_response("a call with this idempotency key is still running"),
    "413": _problem_response("the body is larger than the limit"),
    "422": _problem_response("the idempotency key was used for another request"),
    "429": _problem_response("the decision queue is full; retry after `Retry-After` seconds"),
    "503": _problem_response("SOP is not READY or is stopping (every decision is DENY)"),
}


def _post(summary: str, body: dict[str, Any], ok: dict[str, Any]) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "parameters": _HEADERS,
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {"200": ok, **_REFUSALS},
        }
    }


_OCTETS = {"application/octet-stream": {"schema": {"contentMediaType": "application/octet-stream"}}}
_WRAPPED: dict[str, dict[str, Any]] = {
    "artifacts": {"artifacts": {"type": "array", "items": {"type": "object"}}},
    "submit_obligation": {"verdict": {"type": ["object", "null"]}},
    "resume": {
        "state": {
            "type": ["object", "null"],
            "additionalProperties": {"type": "string", "contentEncoding": "base64"},
        },
        "manifest": {"type": ["object", "null"]},
    },
}


def _operations() -> dict[str, Any]:
    """``/v1/persist``, ``/v1/read`` and one path per protocol facade method."""
    persist = _post(
        "Decide a persist and, on ALLOW, write the body (its scope's limit holds while reading)",
        {},
        _json_response("the decision, with `write` on ALLOW", _ref("Decision")),
    )
    op = persist["post"]
    op["requestBody"] = {"required": True, "content": _OCTETS}
    op["parameters"] = [
        *_HEADERS,
        {
            "name": "SOP-Request",
            "in": "header",
            "required": True,
            "description": "The persist request (schema Request) as unpadded base64url JSON.",
            "schema": {"type": "string"},
        },
    ]
    read = _post(
        "Decide a read and, on ALLOW, answer the verified bytes",
        _ref("Request"),
        {
            "description": "the bytes; SOP-Log-Index, SOP-Content-Digest, Repr-Digest and"
            " SOP-Decision (base64url decision JSON) say which decision allowed them",
            "content": _OCTETS,
        },
    )
    read["post"]["responses"]["403"] = _problem_response("denied: `decision` says why")
    paths: dict[str, Any] = {"/v1/persist": persist, "/v1/read": read}
    for call in CALLS:
        body = call.body.model_json_schema()
        extra = _WRAPPED.get(call.method)
        answer = (
            _ref("Decision")
            if extra is None
            else {
                "type": "object",
                "required": ["decision"],
                "properties": {"decision": _ref("Decision"), **extra},
            }
        )
        entry = _post(
            f"{call.summary} (`sop.{call.protocol}.{call.method}`)",
            body,
            _json_response("the facade's answer (a logged decision)", answer),
        )
        if not call.changes_state:
            entry["post"]["parameters"] = _HEADERS[1:]
        paths[call.path] = entry
    return paths


def _get(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"get": {"summary": summary, "responses": responses, **extra}}


def _schemas() -> dict[str, Any]:
    request = Request.model_json_schema(ref_template=_REF + "{model}")
    defs = request.pop("$defs", {})
    reason = {
        "type": "object",
        "required": ["stage", "code", "message"],
        "properties": {
            "stage": {"type": "string"},
            "code": {"type": "string"},
            "message": {"type": "string"},
            "policy_ids": {"type": "array", "items": {"type": "string"}},
            "capability_id": {"type": "string"},
            "obligation": {"type": "string"},
            "counterexample": {"type": "object"},
        },
    }
    decision = {
        "type": "object",
        "description": "docs/DECISION_JSON.md",
        "required": ["version", "effect", "reasons", "log_index"],
        "properties": {
            "version": {"type": "integer"},
            "effect": {"enum": ["ALLOW", "DENY"]},
            "request_id": {"type": ["string", "null"]},
            "capability_id": {"type": ["string", "null"]},
            "policy_ids": {"type": "array", "items": {"type": "string"}},
            "reasons": {"type": "array", "items": _ref("Reason")},
            "log_index": {"type": ["integer", "null"]},
            "receipt": {"type": "object"},
            "entry_digest": {"type": "string"},
            "replayed": {"type": "boolean"},
        },
    }
    problem = {
        "type": "object",
        "required": ["type", "title", "status", "detail", "code"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "code": {"type": "string"},
            "stage": {"type": "string"},
            "decision": _ref("Decision"),
        },
    }
    entity = {"type": "object", "properties": {"properties": {"type": "object"}}}
    evaluation = {
        "type": "object",
        "required": ["subject", "action", "resource"],
        "properties": {
            "subject": {**entity, "required": ["type", "id"]},
            "action": {**entity, "required": ["name"]},
            "resource": {**entity, "required": ["type", "id"]},
            "context": {"type": "object"},
        },
    }
    return {
        **defs,
        "Request": request,
        "Reason": reason,
        "Decision": decision,
        "Problem": problem,
        "EvaluationRequest": evaluation,
        "EvaluationResponse": {
            "type": "object",
            "required": ["decision"],
            "properties": {"decision": {"type": "boolean"}, "context": {"type": "object"}},
        },
    }


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (a fresh dict each call)."""
    batch = {
        "type": "object",
        "required": ["requests"],
        "additionalProperties": False,
        "properties": {
            "requests": {"type": "array", "minItems": 1, "maxItems": 64, "items": _ref("Request")}
        },
    }
    evaluations = {
        "type": "object",
        "properties": {
            "subject": {"type": "object"},
            "action": {"type": "object"},
            "resource": {"type": "object"},
            "context": {"type": "object"},
            "evaluations": {"type": "array", "minItems": 1, "maxItems": 64},
            "options": {"type": "object"},
        },
    }
    text = {"description": "ok", "content": {"text/plain": {"schema": {"type": "string"}}}}
    paths = {
        "/v1/decide": _post(
            "Decide one request (bridge plane, mutual TLS)",
            _ref("Request"),
            _json_response("the decision, logged, with its receipt", _ref("Decision")),
        ),
        "/v1/decide/batch": _post(
            "Decide up to 64 requests, one result each (bridge plane)",
            batch,
            _json_response(
                "one decision per request, in order",
                {
                    "type": "object",
                    "required": ["results"],
                    "properties": {"results": {"type": "array", "items": _ref("Decision")}},
                },
            ),
        ),
        "/access/v1/evaluation": _post(
            "AuthZEN 1.0 access evaluation (bridge plane)",
            _ref("EvaluationRequest"),
            _json_response("the AuthZEN decision", _ref("EvaluationResponse")),
        ),
        "/access/v1/evaluations": _post(
            "AuthZEN 1.0 access evaluations (bridge plane)",
            evaluations,
            _json_response(
                "one AuthZEN decision per evaluation (fewer with a short-circuit semantic)",
                {
                    "type": "object",
                    "required": ["evaluations"],
                    "properties": {
                        "evaluations": {"type": "array", "items": _ref("EvaluationResponse")}
                    },
                },
            ),
        ),
        **_operations(),
        "/v1/receipts/{index}": _get(
            "The C2SP tlog-proof of a log entry (read plane)",
            {
                "200": text,
                "400": _problem_response("not an index"),
                "404": _problem_response("no such entry"),
                "503": _problem_response(
                    "`not_witnessed`: the entry is in the log, but the witnesses have not"
                    " cosigned a checkpoint covering it yet (`Retry-After`)"
                ),
            },
            parameters=[
                {
                    "name": "index",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^(0|[1-9][0-9]{0,18})$"},
                }
            ],
        ),
        "/health/live": _get(
            "The process answers (read plane)", {"200": _json_response("live", {"type": "object"})}
        ),
        "/health/ready": _get(
            "200 only when SOP is READY; the body says the state and why (read plane)",
            {
                "200": _json_response("ready", {"type": "object"}),
                "503": _json_response("not ready", {"type": "object"}),
            },
        ),
        "/metrics": _get("Prometheus text format (read plane)", {"200": text}),
        "/log/checkpoint": _get(
            "The latest published checkpoint, C2SP tlog-checkpoint: the latest signed one, or"
            " with witnesses configured the latest one they cosigned, cosignatures included",
            {"200": text, "404": _problem_response("no published checkpoint yet")},
        ),
        "/log/tile/{path}": _get(
            "C2SP tlog-tiles: hash tiles `<L>/<N>[.p/<W>]`, entry bundles `entries/<N>[.p/<W>]`",
            {
                "200": {
                    "description": "the tile or bundle",
                    "content": {"application/octet-stream": {"schema": {"type": "string"}}},
                },
                "400": _problem_response("not a canonical tile path"),
                "404": _problem_response("not in the served tree"),
                "501": _problem_response("an entry of the bundle exceeds 65535 bytes"),
            },
            parameters=[
                {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
        ),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "SOP bridge and read planes",
            "version": "1",
            "description": (
                "The bridge plane (mutual TLS; the principal is the client certificate's) and"
                " the public read plane (the log as C2SP tlog-tiles under /log/, receipts,"
                " health, metrics). Errors are RFC 9457 problems. docs/HTTP_API.md."
            ),
        },
        "paths": paths,
        "components": {"schemas": _schemas()},
    }
