"""The admin plane's endpoints: each one parses its body strictly and calls one SOP method.

``GET /admin/status``, ``POST /admin/cap/admit``, ``POST /admin/cap/attenuate``,
``POST /admin/cap/revoke``, ``POST /admin/policy/check``,
``POST /admin/policy/activate``, ``POST /admin/keys/rotate`` and
``POST /admin/emp/keys/revoke`` answer what the
matching ``sop`` command prints with ``--json``. The SOP calls run one at a
time on one worker thread (:class:`AdminWorker`). Errors are RFC 9457
problems: a body that is not JSON or does not fit its model is 400
(``bad_request``, with ``errors``); an action SOP refuses for its input is 422
(with SOP's code; a refused policy set carries its analysis ``report``); an
action SOP refuses for its state (not READY, a rotation staged) is 409; a
stopping server answers 503.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from starlette.requests import Request as HTTPRequest
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sop_verified.errors import InputError, IntegrityError, SOPError, StorageError
from sop_verified.nexus.protocols import emp_revocation
from sop_verified.server.problems import problem
from sop_verified.tools.strict_json import loads_unique_keys

if TYPE_CHECKING:
    from sop_verified.server.state import ServerState

__all__ = ["MAX_BODY", "AdminWorker", "admin_routes"]

MAX_BODY = 64 * 1024
"""An admin body is small: a few names, globs, a token or a path."""

_T = TypeVar("_T")
_Model = TypeVar("_Model", bound=BaseModel)
_Handler = Callable[[HTTPRequest], Awaitable[Response]]

Text = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
Names = Annotated[list[Text], Field(min_length=1, max_length=256)]
Seconds = Annotated[int, Field(ge=0)]


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class AdmitBody(_Body):
    """``POST /admin/cap/admit``: a root capability (times are Unix seconds)."""

    principal: Text
    actions: Names
    resources: Names
    not_before: Seconds | None = None
    expires: Seconds


class AttenuateBody(_Body):
    """``POST /admin/cap/attenuate``: a narrower capability derived from ``parent_token``."""

    parent_token: Annotated[str, StringConstraints(min_length=1, max_length=16384)]
    actions: Names
    resources: Names
    not_before: Seconds | None = None
    expires: Seconds | None = None


class RevokeBody(_Body):
    """``POST /admin/cap/revoke``: a capability and all its descendants."""

    capability_id: Text


class PolicyBody(_Body):
    """``POST /admin/policy/check`` and ``/activate``: an absolute path on the server's machine."""

    path: Text


class EmpRevokeBody(_Body):
    """``POST /admin/emp/keys/revoke``: an EMP signing key's id and why."""

    key_id: Text
    reason: Text = "revoked by the operator"


class EmptyBody(_Body):
    """``POST /admin/keys/rotate``: no fields (an empty body or ``{}``)."""


class _RefusedError(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


class AdminWorker:
    """One thread that runs the admin actions, one at a time."""

    def __init__(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sop-admin")

    async def run(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` on the worker thread and await its result (or its exception)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    def close(self) -> None:
        """Let the thread end once the queued actions are done."""
        self._pool.shutdown(wait=False)


def _json(value: Any) -> Response:
    return Response(orjson.dumps(value), media_type="application/json")


async def _body(request: HTTPRequest) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise _RefusedError(
                problem(413, "body_too_large", f"the body has more than {MAX_BODY} bytes")
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def _parse(request: HTTPRequest, model: type[_Model]) -> _Model:
    """The body as ``model``, or a 400 problem that says which field is wrong and why."""
    raw = await _body(request)
    if not raw.strip() and model is EmptyBody:
        raw = b"{}"
    try:
        data = loads_unique_keys(raw)
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        detail = f"the body is not JSON: {str(exc)[:200]}"
        raise _RefusedError(problem(400, "bad_request", detail)) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [_field_error(e, model) for e in exc.errors(include_url=False)]
        raise _RefusedError(problem(400, "bad_request", "; ".join(errors), errors=errors)) from None


def _field_error(error: Any, model: type[BaseModel]) -> str:
    where = ".".join(str(p) for p in error["loc"]) or "body"
    if error["type"] == "extra_forbidden":
        known = ", ".join(f"`{f}`" for f in model.model_fields) or "none"
        return f"`{where}`: unknown field; accepted: {known}"
    message = str(error["msg"])
    return f"`{where}`: {message[:1].lower()}{message[1:]}"


def _failure(exc: SOPError) -> Response:
    """The problem for an action SOP refused (or failed)."""
    from sop_verified.nexus.sop import PolicyRefusedError  # noqa: PLC0415 - nexus is heavy

    error = type(exc).__name__  # the CLI's exit status follows the class, as for a local run
    if isinstance(exc, PolicyRefusedError):
        return problem(422, "policy_refused", str(exc), report=exc.report.to_dict(), error=error)
    if isinstance(exc, InputError):
        code = getattr(exc, "code", None) or "invalid_input"
        return problem(422, code, str(exc), error=error)
    if isinstance(exc, IntegrityError | StorageError):
        return problem(500, "integrity_error", str(exc), error=error)
    return problem(409, "refused", str(exc), error=error)


def _guarded(handler: _Handler) -> _Handler:
    @functools.wraps(handler)
    async def run(request: HTTPRequest) -> Response:
        try:
            return await handler(request)
        except _RefusedError as exc:
            return exc.response
        except SOPError as exc:
            return _failure(exc)

    return run


def _policy_path(body: PolicyBody) -> Path:
    path = Path(body.path)
    if not path.is_absolute():
        raise _RefusedError(
            problem(
                422,
                "relative_path",
                f"the policy path `{body.path}` is relative; the server reads it on its own"
                " machine and from its own directory: send an absolute path",
            )
        )
    return path


class _Admin:
    """The handlers over one server state and one worker thread."""

    def __init__(self, state: ServerState, worker: AdminWorker) -> None:
        self.state = state
        self.worker = worker

    def _writable(self) -> None:
        if self.state.stopping:
            raise _RefusedError(
                problem(503, "stopping", "the server is stopping and takes no admin actions")
            )

    async def status(self, request: HTTPRequest) -> Response:
        return _json(await self.worker.run(self.state.sop.status))

    async def admit(self, request: HTTPRequest) -> Response:
        b = await _parse(request, AdmitBody)
        self._writable()
        sop = self.state.sop
        cap, token = await self.worker.run(
            lambda: sop.admit(
                b.principal, b.actions, b.resources, not_before=b.not_before, expires=b.expires
            )
        )
        return _json({"capability": cap.to_claims(), "token": token})

    async def attenuate(self, request: HTTPRequest) -> Response:
        b = await _parse(request, AttenuateBody)
        self._writable()
        sop = self.state.sop
        cap, token = await self.worker.run(
            lambda: sop.attenuate(
                b.parent_token,
                actions=b.actions,
                resources=b.resources,
                not_before=b.not_before,
                expires=b.expires,
            )
        )
        return _json({"capability": cap.to_claims(), "token": token})

    async def revoke(self, request: HTTPRequest) -> Response:
        b = await _parse(request, RevokeBody)
        self._writable()
        sop = self.state.sop
        return _json({"revoked": await self.worker.run(lambda: sop.revoke(b.capability_id))})

    async def policy_check(self, request: HTTPRequest) -> Response:
        path = _policy_path(await _parse(request, PolicyBody))
        sop = self.state.sop
        return _json((await self.worker.run(lambda: sop.check_policy(path))).to_dict())

    async def policy_activate(self, request: HTTPRequest) -> Response:
        path = _policy_path(await _parse(request, PolicyBody))
        self._writable()
        sop = self.state.sop
        return _json((await self.worker.run(lambda: sop.activate_policy(path))).to_dict())

    async def keys_rotate(self, request: HTTPRequest) -> Response:
        await _parse(request, EmptyBody)
        self._writable()
        sop = self.state.sop

        def rotate() -> dict[str, Any]:
            receipt = sop.rotate_checkpoint_key()
            return {"vkey": sop.log.verifiers[0].vkey, "receipt": receipt.to_dict()}

        return _json(await self.worker.run(rotate))

    async def emp_key_revoke(self, request: HTTPRequest) -> Response:
        b = await _parse(request, EmpRevokeBody)
        self._writable()
        sop = self.state.sop
        receipt = await self.worker.run(lambda: sop.revoke_emp_key(b.key_id, b.reason))
        return _json(emp_revocation(b.key_id, receipt))  # what `sop emp revoke-key --json` says


def admin_routes(state: ServerState, worker: AdminWorker | None = None) -> list[BaseRoute]:
    """The admin plane's routes over ``state``.

    Args:
        state: the running server's state (its ``sop`` and ``stopping``).
        worker: the thread the SOP calls run on (default: a new one).

    Returns:
        The routes, for :func:`~sop_verified.server.app.plane`.
    """
    admin = _Admin(state, worker or AdminWorker())
    endpoints: list[tuple[str, str, _Handler]] = [
        ("GET", "/admin/status", admin.status),
        ("POST", "/admin/cap/admit", admin.admit),
        ("POST", "/admin/cap/attenuate", admin.attenuate),
        ("POST", "/admin/cap/revoke", admin.revoke),
        ("POST", "/admin/policy/check", admin.policy_check),
        ("POST", "/admin/policy/activate", admin.policy_activate),
        ("POST", "/admin/keys/rotate", admin.keys_rotate),
        ("POST", "/admin/emp/keys/revoke", admin.emp_key_revoke),
    ]
    return [Route(path, _guarded(fn), methods=[method]) for method, path, fn in endpoints]
