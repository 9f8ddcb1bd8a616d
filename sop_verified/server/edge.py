"""What every bridge-plane handler does at the edge: authenticate, read, refuse, replay.

Shared by :mod:`.bridge` (decisions) and :mod:`.operations` (the protocol
operations): the client certificate's principal (401/403), a body read
chunk by chunk within its limit (413 as soon as it passes), the transport's
facts (``Idempotency-Key``, ``traceparent``), 503 while stopping, and the
idempotency of state-changing calls (:mod:`.idempotency`): a retry with the
same key gets the first answer, from memory or, after a restart, from the
authenticated log entry; nothing is decided twice.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as HTTPRequest
from starlette.responses import Response

from sop_verified.core.persistence.logged import authenticated_entry
from sop_verified.core.request import Decision
from sop_verified.core.transport import Transport
from sop_verified.errors import InputError, SOPError
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

__all__ = [
    "JSON",
    "Edge",
    "Handler",
    "RefusedError",
    "decision_index",
    "decision_response",
    "guard",
    "json_object",
    "json_response",
    "parse_json",
    "read_body",
]

JSON = "application/json"
Handler = Callable[[HTTPRequest], Awaitable[Response]]
Run = Callable[[], Awaitable[tuple[Response, int | None]]]
"""Carries a state-changing call out: its response and the log index of its decision."""


class RefusedError(Exception):
    """A request refused before any decision: answered with ``response``."""

    def __init__(self, response: Response) -> None:
        self.response = response


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``value`` as an ``application/json`` response."""
    return Response(orjson.dumps(value), status_code=status, media_type=JSON, headers=headers)


async def read_body(request: HTTPRequest, limit: int) -> bytes:
    """The body, read chunk by chunk and refused (413) as soon as it passes ``limit``.

    Raises:
        RefusedError: the declared or the received length passes ``limit`` (nothing
            more is read).
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise RefusedError(too_large(int(declared), limit))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RefusedError(too_large(size, limit))
        chunks.append(chunk)
    return b"".join(chunks)


def too_large(size: int, limit: int) -> Response:
    """The 413 problem for a body of ``size`` bytes over ``limit``."""
    return problem(413, "body_too_large", f"the body has more than {limit} bytes ({size} seen)")


def parse_json(body: bytes) -> Any:
    """The body as JSON (duplicate keys refused).

    Raises:
        InputError: the body is not JSON.
    """
    try:
        return loads_unique_keys(body)
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise InputError(f"the body is not JSON: {str(exc)[:200]}") from None


def json_object(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object.

    Raises:
        InputError: it is not.
    """
    if not isinstance(value, dict):
        raise InputError(
            f"the body must be a JSON object, got `{type(value).__name__}`", accepted="an object"
        )
    return value


def decision_index(decision: Decision) -> int | None:
    """The log index of the kernel's decision (a refusal names the decision it refused)."""
    return decision.decision_index if decision.decision_index is not None else decision.log_index


def decision_response(decision: Decision) -> Response:
    """The decision as JSON; 503 ``not_ready`` (with the decision) while SOP is not READY."""
    if decision.reasons and decision.reasons[0].code == "not_ready":
        return problem(
            503,
            "not_ready",
            decision.reasons[0].message,
            stage="health",
            headers={"Retry-After": "1"},
            decision=decision.to_dict(),
        )
    return json_response(decision.to_dict())


def guard(handler: Handler) -> Handler:
    """``handler``, answering a :class:`RefusedError` with its response."""

    async def run(request: HTTPRequest) -> Response:
        try:
            return await handler(request)
        except RefusedError as refused:
            return refused.response

    return run


class Edge:
    """The edge checks and the idempotency of the bridge plane over one :class:`ServerState`."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    def principal(self, request: HTTPRequest) -> str | None:
        """The client certificate's principal (None only with ``--unsafe-no-tls``).

        Raises:
            RefusedError: 403 (the certificate names no principal), 401 (no certificate).
        """
        try:
            principal = authenticated_principal(request.scope)
        except SOPError as exc:
            raise RefusedError(problem(403, "no_principal", str(exc))) from None
        if principal is None and not self.state.unsafe_no_tls:
            raise RefusedError(
                problem(401, "no_client_certificate", "a client certificate is required")
            )
        return principal

    def transport(self, request: HTTPRequest, principal: str | None) -> Transport:
        """The transport's facts: ``principal``, the idempotency key, the trace context.

        Raises:
            RefusedError: 400, a malformed ``Idempotency-Key``.
        """
        key = request.headers.get("idempotency-key")
        trace = Transport.trace_or_none(request.headers.get("traceparent"))
        try:
            return Transport(principal, idempotency_key=key, traceparent=trace)
        except ValueError as exc:
            raise RefusedError(problem(400, "bad_idempotency_key", str(exc))) from None

    def refuse_when_stopping(self) -> None:
        """Raises RefusedError (503) once SIGTERM arrived."""
        if self.state.stopping:
            raise RefusedError(
                problem(503, "stopping", "the server is stopping", headers={"Retry-After": "1"})
            )

    def caller(self, request: HTTPRequest) -> Transport:
        """What every call checks first: the principal, not stopping, the transport's facts.

        Raises:
            RefusedError: 401/403 (who is asking), 503 (stopping), 400 (a malformed key).
        """
        principal = self.principal(request)
        self.refuse_when_stopping()
        return self.transport(request, principal)

    async def opened(self, request: HTTPRequest, limit: int) -> tuple[Transport, bytes]:
        """:meth:`caller`, then the body, refused (413) as soon as it passes ``limit``."""
        transport = self.caller(request)
        return transport, await read_body(request, limit)

    async def idempotent(
        self,
        transport: Transport,
        fingerprint: dict[str, Any],
        run: Run,
        shape: Callable[[dict[str, Any]], Any] = lambda decision: decision,
        *,
        logged: Callable[[dict[str, Any]], bool] | None = None,
        complete: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> Response:
        """Run ``run`` once per idempotency key; a retry gets the first answer.

        Args:
            transport: the call's transport (its principal owns the key; no key:
                ``run`` runs and nothing is kept).
            fingerprint: what the key was first used for (a reuse for anything else is 422).
            run: carries the call out; returns the response and the decision's log index.
            shape: the endpoint's answer for a decision replayed from the log.
            logged: after a restart, whether the logged request is this call's
                (default: it equals ``fingerprint``).
            complete: completes a decision replayed from the log with what followed it
                (a persist's effect; blocking, run in a thread).

        Returns:
            The first answer, or this call's.
        """
        key = transport.idempotency_key
        if key is None:
            return (await run())[0]
        owner = transport.principal or "-"
        # orjson, not canonical JSON: a fingerprint only has to be stable within this process,
        # and canonical JSON refuses integers past 2**53 that a request may carry (a 500 here)
        digest = _fingerprint_digest(fingerprint)
        keys = self.state.keys
        replicas = self.state.replicas
        if replicas is not None and replicas.due():  # a first call another replica logged
            await run_in_threadpool(replicas)
        try:
            first = keys.begin(owner, key, digest)
        except KeyInFlightError as exc:
            return problem(409, "idempotency_key_in_flight", str(exc))
        except KeyReusedError as exc:
            return problem(422, "idempotency_key_reused", str(exc))
        if isinstance(first, Answer):
            return Response(first.body, status_code=first.status, media_type=first.media_type)
        if isinstance(first, int):
            return await self._from_log(
                first, transport, fingerprint, shape=shape, logged=logged, complete=complete
            )
        # The call runs in a task of its own: a client that goes away cancels the wait, not the
        # call, and the key is settled when the call ends. Abandoning it at the cancel would
        # let a retry decide again while the first decision is still queued.
        task = asyncio.ensure_future(run())
        try:
            response, index = await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                task.add_done_callback(lambda done: self._settle(owner, key, done))
            raise
        finally:
            if task.done():
                self._settle(owner, key, task)
        decided = keys.logged(owner, key) if index is None else None
        if decided is not None:  # another replica logged the key's decision while this call ran
            return await self._from_log(
                decided, transport, fingerprint, shape=shape, logged=logged, complete=complete
            )
        return response

    async def _from_log(
        self,
        index: int,
        transport: Transport,
        fingerprint: dict[str, Any],
        *,
        shape: Callable[[dict[str, Any]], Any],
        logged: Callable[[dict[str, Any]], bool] | None,
        complete: Callable[[dict[str, Any]], dict[str, Any]] | None,
    ) -> Response:
        """The answer to a key whose first decision is the log's entry at ``index``."""
        replayed = await self.first_decision(index, transport, fingerprint, logged)
        if isinstance(replayed, Response):
            return replayed
        if complete is not None:
            try:
                replayed = await run_in_threadpool(complete, replayed)
            except SOPError as exc:
                why = f"the first answer cannot be completed from the log: {exc}"
                return problem(503, "integrity", why, headers={"Retry-After": "1"})
        return json_response(shape(replayed))

    def _settle(
        self, owner: str, key: str, task: asyncio.Future[tuple[Response, int | None]]
    ) -> None:
        """Keep the first answer for ``key``, or free the key if nothing was decided."""
        keys = self.state.keys
        if task.cancelled() or task.exception() is not None:
            keys.abandon(owner, key)
            return
        response, index = task.result()
        if response.status_code in (429, 503) or index is None:
            keys.abandon(owner, key)  # the key was not used (a not-READY DENY is logged
            # without it, the kernel's `_at_the_door`): a retry runs it
        else:
            answer = Answer(response.status_code, response.media_type or JSON, bytes(response.body))
            keys.finish(owner, key, answer, index)

    async def first_decision(
        self,
        index: int,
        transport: Transport,
        fingerprint: dict[str, Any],
        logged: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any] | Response:
        """The decision first made with the transport's key, read from the log (a restart).

        Returns:
            The decision JSON (``replayed`` true), or the problem (422: the key was
            used for another request; 503: the entry cannot be proved).
        """
        owner, key = transport.principal or "-", transport.idempotency_key or ""
        sop = self.state.sop
        try:
            entry = await run_in_threadpool(
                authenticated_entry, sop.store.log, index, what="the idempotent call's decision"
            )
            if logged is None:
                check_replay(entry, owner, key, fingerprint)
            else:
                request = entry.get("request")
                asked = request if isinstance(request, dict) else {}
                check_replay(entry, owner, key, asked)  # the key is this principal's
                if not logged(asked):
                    raise KeyReusedError(
                        f"idempotency key `{key}` was used for another request;"
                        " use a new key for a new request"
                    )
        except KeyReusedError as exc:
            return problem(422, "idempotency_key_reused", str(exc))
        except SOPError as exc:
            return problem(503, "integrity", f"the first answer cannot be replayed: {exc}")
        return replayed_decision(entry, index, sop)


def replayed_decision(entry: dict[str, Any], index: int, sop: Any) -> dict[str, Any]:
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


def _fingerprint_digest(fingerprint: dict[str, Any]) -> str:
    """SHA-256 of what a key was used for; stable within this process, for any JSON value."""
    try:
        data = orjson.dumps(fingerprint, option=orjson.OPT_SORT_KEYS)
    except (TypeError, ValueError):  # e.g. an integer past 64 bits: Python's JSON keeps it
        data = repr(sorted(fingerprint.items())).encode("utf-8", "backslashreplace")
    return hashlib.sha256(data).hexdigest()
