"""Remote DRAC, EMP and CSP facades: ``sop.drac`` and friends over a ``sop serve`` bridge plane.

:class:`RemoteDRAC`, :class:`RemoteEMP` and :class:`RemoteCSP` have the
in-process facades' method names and signatures, so code written against
``sop.drac`` runs against a server::

    with httpx.Client(base_url="https://127.0.0.1:7600", verify=ctx) as http:
        drac = RemoteDRAC(http)          # ctx: client_ssl_context(cert, key, ca)
        drac.open_session("s-1", token=t).allowed

Each call is one ``POST /v1/<protocol>/<method>`` (docs/HTTP_OPERATIONS.md); the
server decides it for the principal of the client certificate. Their answers
are :class:`RemoteDecision` (the decision JSON, with ``allowed``,
``reasons``, ``log_index``, ``write`` and the protocol's ``record`` fields)
rather than the kernel's own objects. A state-changing call carries a fresh
``Idempotency-Key``, reused when it is retried after a connection failure, a
429 or a 503, so a retry never makes a second effect. A refusal before any
decision (a malformed argument) raises :class:`~sop_verified.errors.ProtocolError`
as the in-process facade does; any other problem raises :class:`RemoteCallError`.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from sop_verified.core.request import Obligation, Permission, Reason, Stage
from sop_verified.errors import ProtocolError, SOPError
from sop_verified.protocols.emp.outputs import VerificationOutput

__all__ = [
    "Post",
    "RemoteCSP",
    "RemoteCallError",
    "RemoteCatalogQuery",
    "RemoteDRAC",
    "RemoteDecision",
    "RemoteEMP",
    "RemoteObligationOutcome",
    "RemoteResume",
    "RemoteWrite",
    "http_post",
]

Post = Callable[[str, dict[str, Any], bool], dict[str, Any]]
"""Posts a JSON body to a path (state-changing or not) and returns the JSON answer."""

_RECORD_KEYS = ("phase", "artifact", "output", "unchanged", "snapshot")


class RemoteCallError(SOPError):
    """The server answered a problem instead of a decision (its status and code)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        self.status = status
        self.code = code
        super().__init__(f"`{status}` `{code}`: {detail}")


def _reason(raw: Mapping[str, Any]) -> Reason:
    return Reason(
        Stage(raw["stage"]),
        str(raw["code"]),
        str(raw["message"]),
        tuple(raw.get("policy_ids", ())),
        raw.get("capability_id"),
        raw.get("obligation"),
        raw.get("counterexample"),
    )


@dataclass(frozen=True)
class RemoteWrite:
    """What an allowed persist action wrote (the fields of ``WriteResult``, the receipt as JSON)."""

    outcome: str
    index: int
    scope: str
    name: str
    stored: str
    digest: str
    size: int
    version: int | None
    receipt: dict[str, Any]


@dataclass(frozen=True)
class RemoteDecision:
    """A decision as the server sent it (docs/DECISION_JSON.md)."""

    body: dict[str, Any]

    @property
    def effect(self) -> Permission:
        """ALLOW or DENY."""
        return Permission(self.body["effect"])

    @property
    def allowed(self) -> bool:
        """True only for ALLOW."""
        return self.effect is Permission.ALLOW

    @property
    def reasons(self) -> tuple[Reason, ...]:
        """Why, stage by stage."""
        return tuple(_reason(r) for r in self.body.get("reasons", ()))

    @property
    def log_index(self) -> int | None:
        """The decision's log entry."""
        index = self.body.get("log_index")
        return index if isinstance(index, int) else None

    @property
    def request_id(self) -> str | None:
        """The request's id."""
        return self.body.get("request_id")

    @property
    def write(self) -> RemoteWrite | None:
        """For an ALLOW the persistence controller carried out, what it wrote."""
        raw = self.body.get("write")
        return None if raw is None else RemoteWrite(**raw)

    @property
    def record(self) -> dict[str, Any] | None:
        """The protocol's record of what its ALLOW did (``phase``, ``artifact``, ...)."""
        found = {k: self.body[k] for k in _RECORD_KEYS if k in self.body}
        return found or None

    def to_dict(self) -> dict[str, Any]:
        """The decision JSON."""
        return dict(self.body)


@dataclass(frozen=True)
class RemoteCatalogQuery:
    """A catalog query's decision and the matching artifacts (their JSON form)."""

    decision: RemoteDecision
    artifacts: tuple[dict[str, Any], ...] = ()

    @property
    def allowed(self) -> bool:
        """True only for an ALLOW."""
        return self.decision.allowed


@dataclass(frozen=True)
class RemoteObligationOutcome:
    """The bridge decision and, when the obligation reached the gate, its verdict (JSON)."""

    decision: RemoteDecision
    verdict: dict[str, Any] | None


@dataclass(frozen=True)
class RemoteResume:
    """A resume's decision and, when allowed, the verified state and its manifest."""

    decision: RemoteDecision
    state: dict[str, bytes] | None = None
    manifest: dict[str, Any] | None = None

    @property
    def allowed(self) -> bool:
        """True only when every INV-7 check passed and the resume is logged."""
        return self.decision.allowed and self.state is not None


def http_post(client: httpx.Client, *, retries: int = 2, backoff: float = 0.2) -> Post:
    """A :data:`Post` over ``client`` (its ``base_url`` the bridge plane, mutual TLS set up).

    Args:
        client: the HTTP client.
        retries: how many times a call is retried (same idempotency key) after a
            connection failure, a 429 or a 503.
        backoff: seconds before the first retry (doubling; ``Retry-After`` caps at 5).

    Returns:
        The poster.
    """

    def post(path: str, body: dict[str, Any], changes_state: bool) -> dict[str, Any]:
        headers = {"Idempotency-Key": secrets.token_urlsafe(18)} if changes_state else {}
        wait = backoff
        for attempt in range(retries + 1):
            last = attempt == retries
            try:
                answer = client.post(path, json=body, headers=headers)
            except httpx.TransportError:
                if last or not changes_state:
                    raise
            else:
                if answer.status_code not in (429, 503) or last:
                    return _answer(answer)
                wait = min(float(answer.headers.get("retry-after", wait) or wait), 5.0)
            time.sleep(wait)
            wait *= 2
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    return post


def _answer(answer: httpx.Response) -> dict[str, Any]:
    try:
        body = answer.json()
    except ValueError:
        raise RemoteCallError(answer.status_code, "not_json", answer.text[:200]) from None
    if answer.status_code == 200 and isinstance(body, dict):
        return body
    code = str(body.get("code", "error")) if isinstance(body, dict) else "error"
    detail = str(body.get("detail", "")) if isinstance(body, dict) else answer.text[:200]
    if answer.status_code == 400 and isinstance(body, dict) and body.get("stage") == "protocol":
        raise ProtocolError(detail, code=code)
    raise RemoteCallError(answer.status_code, code, detail)


class _Remote:
    protocol = ""

    def __init__(self, client: httpx.Client | Post) -> None:
        self._post = http_post(client) if isinstance(client, httpx.Client) else client

    def _call(self, method: str, body: dict[str, Any], *, changes_state: bool = True) -> Any:
        path = f"/v1/{self.protocol}/{method.replace('_', '-')}"
        sent = {k: v for k, v in body.items() if v is not None or k == "parent"}
        return self._post(path, sent, changes_state)

    def _decision(self, method: str, body: dict[str, Any]) -> RemoteDecision:
        return RemoteDecision(self._call(method, body))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class RemoteDRAC(_Remote):
    """DRAC's facade over HTTP (see :class:`~sop_verified.protocols.drac.DRAC`)."""

    protocol = principal = "drac"

    def open_session(
        self, session: str, *, token: str, request_id: str | None = None
    ) -> RemoteDecision:
        """Open ``session`` by entering the first phase (refused if it exists)."""
        body = {"session": session, "token": token, "request_id": request_id}
        return self._decision("open_session", body)

    def enter(
        self, session: str, phase: str, *, token: str, request_id: str | None = None
    ) -> RemoteDecision:
        """Enter ``phase``: allowed only right after the previous phase completed and was logged."""
        body = {"session": session, "phase": phase, "token": token, "request_id": request_id}
        return self._decision("enter", body)

    def complete(
        self, session: str, phase: str, *, token: str, request_id: str | None = None
    ) -> RemoteDecision:
        """Complete ``phase``, the session's open phase."""
        body = {"session": session, "phase": phase, "token": token, "request_id": request_id}
        return self._decision("complete", body)

    def catalog(
        self,
        session: str,
        phase: str,
        name: str,
        data: bytes,
        *,
        inputs: Sequence[str] = (),
        token: str,
        request_id: str | None = None,
    ) -> RemoteDecision:
        """Store and catalogue an artifact of ``session``'s open ``phase`` with its provenance."""
        body = {
            "session": session,
            "phase": phase,
            "name": name,
            "data": _b64(data),
            "inputs": list(inputs),
            "token": token,
            "request_id": request_id,
        }
        return self._decision("catalog", body)

    def artifacts(
        self,
        *,
        token: str,
        session: str | None = None,
        phase: str | None = None,
        digest: str | None = None,
        request_id: str | None = None,
    ) -> RemoteCatalogQuery:
        """Query the catalog."""
        body = {"session": session, "phase": phase, "digest": digest}
        answer = self._call(
            "artifacts", {**body, "token": token, "request_id": request_id}, changes_state=False
        )
        found = tuple(answer.get("artifacts", ()))
        return RemoteCatalogQuery(RemoteDecision(answer["decision"]), found)


class RemoteEMP(_Remote):
    """EMP's facade over HTTP (see :class:`~sop_verified.protocols.emp.EMP`)."""

    protocol = principal = "emp"

    def record_output(
        self, output: VerificationOutput, *, token: str, request_id: str | None = None
    ) -> RemoteDecision:
        """Record a signed verification output, write-once, with an attestation."""
        body = {"output": output.model_dump(), "token": token, "request_id": request_id}
        return self._decision("record_output", body)

    def submit_obligation(
        self, obligation: Obligation | dict[str, Any], *, token: str, request_id: str | None = None
    ) -> RemoteObligationOutcome:
        """Submit one obligation; ALLOW only if it is PROVED (and everything else holds)."""
        raw = obligation.model_dump() if isinstance(obligation, Obligation) else obligation
        answer = self._call(
            "submit_obligation", {"obligation": raw, "token": token, "request_id": request_id}
        )
        return RemoteObligationOutcome(RemoteDecision(answer["decision"]), answer.get("verdict"))


class RemoteCSP(_Remote):
    """CSP's facade over HTTP (see :class:`~sop_verified.protocols.csp.CSP`)."""

    protocol = principal = "csp"

    def persist_state(
        self,
        key: str,
        data: bytes,
        *,
        state_class: str,
        token: str,
        session: str | None = None,
        request_id: str | None = None,
    ) -> RemoteDecision:
        """Persist state of ``state_class`` under ``state/csp/<key>`` (versioned), if eligible."""
        body = {
            "key": key,
            "data": _b64(data),
            "state_class": state_class,
            "session": session,
            "token": token,
            "request_id": request_id,
        }
        return self._decision("persist_state", body)

    def put_blob(
        self, data: bytes, *, state_class: str, token: str, request_id: str | None = None
    ) -> RemoteDecision:
        """Store a snapshot blob by its digest (``write["digest"]`` on ALLOW)."""
        body = {
            "data": _b64(data),
            "state_class": state_class,
            "token": token,
            "request_id": request_id,
        }
        return self._decision("put_blob", body)

    def seal(
        self,
        session: str,
        entries: Mapping[str, str],
        *,
        parent: str | None,
        token: str,
        state_class: str = "working",
        request_id: str | None = None,
    ) -> RemoteDecision:
        """Seal a snapshot of ``entries`` (key to stored blob digest) as a child of ``parent``."""
        body = {
            "session": session,
            "entries": dict(entries),
            "parent": parent,
            "state_class": state_class,
            "token": token,
            "request_id": request_id,
        }
        return self._decision("seal", body)

    def resume(
        self,
        session: str,
        snapshot: str,
        *,
        token: str,
        state_class: str = "working",
        request_id: str | None = None,
    ) -> RemoteResume:
        """Resume ``snapshot`` of ``session``: the state only if INV-7 holds."""
        body = {
            "session": session,
            "snapshot": snapshot,
            "state_class": state_class,
            "token": token,
            "request_id": request_id,
        }
        answer = self._call("resume", body, changes_state=False)
        raw = answer.get("state")
        state = None if raw is None else {k: base64.b64decode(v) for k, v in raw.items()}
        return RemoteResume(RemoteDecision(answer["decision"]), state, answer.get("manifest"))
