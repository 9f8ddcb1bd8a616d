"""The calls of :mod:`sop_verified.client` without I/O: what to send, when to retry, what came back.

Both clients (blocking and asyncio) build the same :class:`Call` for each
method and differ only in how they send it and how they wait. The retry rule
(docs in :mod:`sop_verified.client`): a 429 or a 503 decided nothing and is
tried again after its ``Retry-After`` (capped); a 409
``idempotency_key_in_flight`` waits for the first try; a connection error is
tried again only when a second try cannot be a second decision (the call
carries an ``Idempotency-Key`` the server replays, or the connection was never
made). Every try of a call carries the same key.
"""

from __future__ import annotations

import email.utils
import re
import secrets
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx
import orjson

from sop_verified.client_json import decision_from_json, load_json, remote_error
from sop_verified.core.request import Decision, Request
from sop_verified.core.transport import IDEMPOTENCY_KEY_PATTERN
from sop_verified.errors import InputError, RemoteError

__all__ = ["Call", "Calls", "Requestish", "read_plane", "submitted"]

_T = TypeVar("_T")
_JSON = {"Content-Type": "application/json"}
_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)
_RETRY_STATUSES = frozenset({429, 503})
Requestish = Request | dict[str, Any] | bytes | str


@dataclass(frozen=True, slots=True)
class Call(Generic[_T]):
    """One call, sans I/O: what to send, which answers are results, how to read them."""

    method: str
    bridge: bool  # the bridge plane (mutual TLS), else the read plane
    path: str
    body: bytes | None
    headers: dict[str, str]
    parse: Callable[[httpx.Response], _T]
    accept: frozenset[int] = frozenset({200})
    resend_safe: bool = True  # a try that may have reached the server can be sent again


def _idempotency_key(given: str | None) -> str:
    if given is None:
        return secrets.token_urlsafe(18)
    if not _KEY.fullmatch(given):
        raise ValueError(f"idempotency key `{given[:40]}` does not match `{_KEY.pattern}`")
    return given


def _request_body(request: Requestish) -> bytes:
    if isinstance(request, Request):
        body = request.to_dict()  # the token is never in to_dict(): put it back
        if request.capability:
            body["capability"] = request.capability
        return orjson.dumps(body)
    if isinstance(request, str):
        return request.encode()
    return request if isinstance(request, bytes) else orjson.dumps(request)


def _json_of(response: httpx.Response, what: str) -> Any:
    return load_json(response.content, what)


def _decision(response: httpx.Response) -> Decision:
    return decision_from_json(_json_of(response, "the decision"))


def _decisions(response: httpx.Response) -> list[Decision]:
    body = _json_of(response, "the batch answer")
    results = body.get("results") if isinstance(body, dict) else None
    if not isinstance(results, list):
        raise InputError('the batch answer is not `{"results": [...]}`', where="results")
    return [decision_from_json(r) for r in results]


def _evaluation(response: httpx.Response) -> tuple[bool, Decision]:
    body = _json_of(response, "the evaluation")
    allowed = body.get("decision") if isinstance(body, dict) else None
    context = body.get("context") if isinstance(body, dict) else None
    if not isinstance(allowed, bool) or not isinstance(context, dict):
        raise InputError("the evaluation has no boolean `decision` and `context`")
    decision = decision_from_json(context.get("sop"))
    if allowed is not decision.allowed:  # the two answers must be one answer
        raise InputError(
            f"the evaluation says `{allowed}`, its decision `{decision.effect}`", where="decision"
        )
    return allowed, decision


def _ready(response: httpx.Response) -> dict[str, Any]:
    body = _json_of(response, "the readiness answer")
    if not isinstance(body, dict):
        raise InputError("the readiness answer is not a JSON object")
    return body


def _text(response: httpx.Response) -> str:
    return response.text


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _problem_code(response: httpx.Response) -> str | None:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None


def _never_reached(exc: httpx.TransportError) -> bool:
    """The connection was never made: the server saw nothing of the request."""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)


def _certificate_refused(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class Calls:
    """What both clients share: the calls they build, the retry rule, the answers they read."""

    def __init__(self, *, retries: int, max_wait: float) -> None:
        if retries < 0 or max_wait < 0:
            raise ValueError("`retries` and `max_wait` must not be negative")
        self.retries = retries
        self.max_wait = max_wait

    # ---- the calls -----------------------------------------------------------------------
    def _decide(self, request: Requestish, key: str | None) -> Call[Decision]:
        headers = {**_JSON, "Idempotency-Key": _idempotency_key(key)}
        return Call("POST", True, "/v1/decide", _request_body(request), headers, _decision)

    def _batch(self, requests: Iterable[Requestish], key: str | None) -> Call[list[Decision]]:
        items = [orjson.Fragment(_request_body(r)) for r in requests]
        body = orjson.dumps({"requests": items})
        headers = {**_JSON, "Idempotency-Key": _idempotency_key(key)}
        return Call("POST", True, "/v1/decide/batch", body, headers, _decisions)

    def _evaluate(
        self,
        subject: str | dict[str, Any],
        action: str | dict[str, Any],
        resource: str | dict[str, Any],
        context: dict[str, Any] | None,
        capability: str | None,
    ) -> Call[tuple[bool, Decision]]:
        subj: dict[str, Any] = (
            {"type": "agent", "id": subject} if isinstance(subject, str) else dict(subject)
        )
        if capability is not None:
            props: dict[str, Any] = dict(subj.get("properties") or {})
            subj["properties"] = {**props, "capability": capability}
        body = {
            "subject": subj,
            "action": {"name": action} if isinstance(action, str) else action,
            "resource": {"type": "path", "id": resource} if isinstance(resource, str) else resource,
            "context": context or {},
        }
        path, data = "/access/v1/evaluation", orjson.dumps(body)
        return Call("POST", True, path, data, dict(_JSON), _evaluation, resend_safe=False)

    def _receipt(self, index: int) -> Call[str]:
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError(f"a log index is a non-negative integer, got `{index!r}`")
        return self._read_call(f"/v1/receipts/{index}", _text, frozenset({200}))

    def _ready(self) -> Call[dict[str, Any]]:
        return self._read_call("/health/ready", _ready, frozenset({200, 503}))

    def _read_call(
        self, path: str, parse: Callable[[httpx.Response], _T], accept: frozenset[int]
    ) -> Call[_T]:
        return Call("GET", False, path, None, {}, parse, accept)

    # ---- the retry rule --------------------------------------------------------------------
    def _backoff(self, attempt: int) -> float:
        jitter = 0.5 + secrets.randbelow(1000) / 1000
        return min(self.max_wait, 0.05 * 2.0**attempt * jitter)

    def _wait_after_answer(
        self, call: Call[Any], response: httpx.Response, attempt: int
    ) -> float | None:
        """Seconds to wait before trying again, or None: this answer is final."""
        if attempt >= self.retries or response.status_code in call.accept:
            return None
        if response.status_code in _RETRY_STATUSES:  # nothing was decided
            after = _retry_after(response)
            return self._backoff(attempt) if after is None else min(after, self.max_wait)
        if response.status_code == 409 and _problem_code(response) == "idempotency_key_in_flight":
            return self._backoff(attempt)
        return None

    def _wait_after_error(self, call: Call[Any], exc: httpx.TransportError, attempt: int) -> float:
        """Seconds to wait before trying again; raises when the call must not be sent again."""
        final = (
            attempt >= self.retries
            or _certificate_refused(exc)
            or not (call.resend_safe or _never_reached(exc))
        )
        if final:
            detail = f"{type(exc).__name__}: {exc}"[:500]
            raise RemoteError(None, "unreachable", f"{detail} (after {attempt + 1} tries)") from exc
        return self._backoff(attempt)

    @staticmethod
    def _result(call: Call[_T], response: httpx.Response) -> _T:
        if response.status_code in call.accept:
            return call.parse(response)
        raise remote_error(
            response.status_code, response.content, response.headers.get("content-type", "")
        )


_H = TypeVar("_H", httpx.Client, httpx.AsyncClient)


def read_plane(http: _H | None) -> _H:
    if http is None:
        raise ValueError("this client has no `read_url`: the read plane is not known")
    return http


def submitted(exc: RemoteError) -> Decision:
    """What :meth:`SOP.submit` answers where the server answered a problem: its logged DENY."""
    if isinstance(exc.decision, Decision):
        return exc.decision
    raise exc
