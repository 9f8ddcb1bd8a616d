"""Bridge requests, obligations and decisions: the kernel's spec nouns.

Untrusted input is parsed once, here, strictly: unknown fields, unknown
operations, unknown context attributes, ill-typed values and oversized
requests are rejected with a precise :class:`RequestError`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from sop_verified.core.contracts import ensure
from sop_verified.core.decision_fields import ProtocolRecord, WriteResult
from sop_verified.core.transport import Transport
from sop_verified.errors import InputError, RequestError
from sop_verified.tools.paths import check_path
from sop_verified.tools.tlog_store import Receipt

__all__ = [
    "ACTIONS",
    "ADMIN_ACTIONS",
    "BRIDGE_ACTIONS",
    "CONTENT_DIGEST_PATTERN",
    "CONTEXT_SCHEMA",
    "DECISION_JSON_VERSION",
    "MAX_REQUEST_BYTES",
    "PERSIST_ACTIONS",
    "PRINCIPAL_PATTERN",
    "AttrType",
    "Decision",
    "Obligation",
    "Permission",
    "Reason",
    "Request",
    "Stage",
    "parse_request",
]

MAX_REQUEST_BYTES = 64 * 1024
MAX_OBLIGATIONS = 16
MAX_OBLIGATION_BYTES = 32 * 1024
MAX_STRING = 256
MAX_SET = 32
INT_MIN, INT_MAX = -(2**63), 2**63 - 1

# The operation kinds SOP knows (spec/POLICY_LANGUAGE.md). Anything else is DENY.
BRIDGE_ACTIONS = frozenset(
    {
        "artifact.persist",
        "artifact.read",
        "phase.advance",
        "verdict.record",
        "obligation.submit",
        "state.persist",
        "snapshot.seal",
        "snapshot.resume",
    }
)
ADMIN_ACTIONS = frozenset(
    {
        "capability.admit",
        "capability.attenuate",
        "capability.revoke",
        "policy.activate",
        "key.rotate",
        "scope.define",
    }
)
ACTIONS = BRIDGE_ACTIONS | ADMIN_ACTIONS
PERSIST_ACTIONS = frozenset(
    {"artifact.persist", "verdict.record", "state.persist", "snapshot.seal"}
)


class AttrType(enum.Enum):
    """Types of the policy language."""

    INT = "Int"
    STRING = "String"
    BOOL = "Bool"
    SET = "Set<String>"


# The request context attributes policies may name; anything else is rejected.
CONTEXT_SCHEMA: dict[str, AttrType] = {
    "size_bytes": AttrType.INT,
    "hour": AttrType.INT,
    "trust_level": AttrType.INT,
    "session": AttrType.STRING,
    "phase": AttrType.STRING,
    "state_class": AttrType.STRING,
    "classification": AttrType.STRING,
    "tenant": AttrType.STRING,
    "emergency": AttrType.BOOL,
    "labels": AttrType.SET,
}

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_PRINCIPAL_RE = re.compile(r"[a-z][a-z0-9_-]{0,63}")
PRINCIPAL_PATTERN = _PRINCIPAL_RE.pattern
CONTENT_DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"
"""A content digest as requests carry it: ``sha256:`` and 64 lowercase hex digits."""
"""The principal id grammar (a full-match regex); policies and their Z3 encoding reuse it."""


class Stage(enum.StrEnum):
    """Where on the decision path a reason arose (DESIGN section 4)."""

    SCHEMA = "schema"
    HEALTH = "health"
    CAPABILITY = "capability"
    POLICY = "policy"
    OBLIGATION = "obligation"
    LOG = "log"
    PERSISTENCE = "persistence"
    PROTOCOL = "protocol"
    INTERNAL = "internal"


class Permission(enum.StrEnum):
    """The only two answers SOP gives: ALLOW or DENY (a decision's ``effect``).

    Named for what it is, not "effect": an *effect* is the write an ALLOW
    permits (:class:`~sop_verified.core.decision_fields.WriteResult`, the
    ``persist.effect`` log entry). Code that branches on it matches every
    member with ``assert_never``, so ``mypy --strict`` finds a new one.
    """

    ALLOW = "ALLOW"
    DENY = "DENY"


class Obligation(BaseModel):
    """A proof obligation carried by a request (SMT-LIB 2 text or the structured JSON form)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    id: str = Field(pattern=f"^{_ID_RE.pattern}$")
    format: Literal["smt2", "json"]
    source: str = Field(max_length=MAX_OBLIGATION_BYTES)


def _is_set(v: Any) -> bool:
    return (
        isinstance(v, list | tuple | frozenset)
        and len(v) <= MAX_SET
        and all(type(x) is str and len(x) <= MAX_STRING for x in v)
    )


# One checker per context attribute, looked up by name (built once, not per value).
_CONTEXT_CHECKS: dict[str, Callable[[Any], bool]] = {
    name: {
        AttrType.INT: lambda v: type(v) is int and INT_MIN <= v <= INT_MAX,
        AttrType.STRING: lambda v: type(v) is str and len(v) <= MAX_STRING,
        AttrType.BOOL: lambda v: type(v) is bool,
        AttrType.SET: _is_set,
    }[kind]
    for name, kind in CONTEXT_SCHEMA.items()
}


def _check_context_value(name: str, value: Any) -> Any:
    check = _CONTEXT_CHECKS.get(name)
    if check is None:
        raise InputError(
            f"unknown context attribute `{name}`",
            where=f"context.{name}",
            accepted=", ".join(f"`{k}`" for k in sorted(CONTEXT_SCHEMA)),
        )
    if not check(value):
        kind = CONTEXT_SCHEMA[name]
        raise InputError(
            f"context attribute `{name}` has the wrong type or size",
            where=f"context.{name}",
            accepted=f"{kind.value} (strings up to {MAX_STRING}, sets up to {MAX_SET} strings)",
        )
    return frozenset(value) if check is _is_set else value


class Request(BaseModel):
    """One operation asked of SOP through the Runtime Bridge or the admin plane."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    request_id: str = Field(pattern=f"^{_ID_RE.pattern}$")
    principal: str = Field(pattern=f"^{_PRINCIPAL_RE.pattern}$")
    action: str
    resource: str
    capability: str = Field(default="", max_length=8192)
    channel: Literal["bridge", "admin"] = "bridge"
    context: dict[str, Any] = Field(default_factory=dict)
    obligations: list[Obligation] = Field(default_factory=list, max_length=MAX_OBLIGATIONS)
    content_digest: str | None = Field(default=None, pattern=CONTENT_DIGEST_PATTERN)
    """For persist actions: ``sha256:<64 hex>`` of the bytes to write; the decision binds it."""
    _transport: Transport | None = PrivateAttr(default=None)

    @ensure(lambda self, transport, result: result.transport is transport, helper=True)
    @ensure(
        lambda self, result: result.to_dict() == self.to_dict(),
        "the body is unchanged",
        helper=True,
    )
    def via(self, transport: Transport) -> Request:
        """This request as ``transport`` delivered it (a copy; the body is unchanged).

        The transport's facts are not fields: no request body can set them (an
        unknown key such as ``_transport`` is refused like any other). Copies made
        with ``model_copy`` keep them.
        """
        out = self.model_copy()
        out._transport = transport
        return out

    @property
    def transport(self) -> Transport | None:
        """What the transport said about this request, or None (an in-process call)."""
        return self._transport

    @field_validator("action")
    @classmethod
    def _known_action(cls, v: str) -> str:
        if v not in ACTIONS:
            raise ValueError(
                f"unknown operation `{v[:64]}`; accepted: {', '.join(sorted(ACTIONS))}"
            )
        return v

    @field_validator("resource")
    @classmethod
    def _path(cls, v: str) -> str:
        try:
            return check_path(v)
        except InputError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("context")
    @classmethod
    def _context(cls, v: dict[str, Any]) -> dict[str, Any]:
        if len(v) > len(CONTEXT_SCHEMA):
            raise ValueError(
                f"context has {len(v)} attributes, more than the schema's {len(CONTEXT_SCHEMA)}"
            )
        try:
            return {k: _check_context_value(k, x) for k, x in v.items()}
        except InputError as exc:
            raise ValueError(str(exc)) from None

    @ensure(lambda result: "capability" not in result, "the token is never serialised", helper=True)
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (sets as sorted lists, the token left out)."""
        return {
            "request_id": self.request_id,
            "principal": self.principal,
            "action": self.action,
            "resource": self.resource,
            "channel": self.channel,
            "context": {
                k: sorted(v) if isinstance(v, frozenset) else v for k, v in self.context.items()
            },
            "obligations": [o.model_dump() for o in self.obligations],
            **({} if self.content_digest is None else {"content_digest": self.content_digest}),
        }


@ensure(
    lambda raw, result: not isinstance(raw, Request) or result is raw,
    "a parsed request passes unchanged",
    helper=True,
)
def parse_request(raw: Request | dict[str, Any] | bytes | str) -> Request:
    """Parse an untrusted request once, strictly.

    Args:
        raw: a :class:`Request`, a JSON object as a dict, or JSON text.

    Returns:
        The validated request.

    Raises:
        RequestError: oversized, not JSON, unknown field or operation, bad path,
            unknown or ill-typed context attribute; the message says where.
    """
    if isinstance(raw, Request):
        return raw
    if isinstance(raw, bytes | str):
        data = raw.encode() if isinstance(raw, str) else raw
        if len(data) > MAX_REQUEST_BYTES:
            raise RequestError(
                f"request is {len(data)} bytes", accepted=f"at most {MAX_REQUEST_BYTES} bytes"
            )
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise RequestError(f"request is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise RequestError(f"request must be a JSON object, got `{type(raw).__name__}`")
    try:
        size = len(orjson.dumps(raw, default=list))
    except TypeError as exc:
        raise RequestError(f"request holds a non-JSON value: {exc}") from None
    if size > MAX_REQUEST_BYTES:
        raise RequestError(
            f"request is {size} bytes", accepted=f"at most {MAX_REQUEST_BYTES} bytes"
        )
    try:
        return Request.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = str(err["msg"]).removeprefix("Value error, ")
        if "; at `" in msg:  # the field validator already said where
            raise RequestError(msg) from None
        where = ".".join(str(p) for p in err["loc"]) or "request"
        raise RequestError(msg, where=where) from None


@dataclass(frozen=True, slots=True)
class Reason:
    """One machine-readable reason of a decision."""

    stage: Stage
    code: str
    message: str
    policy_ids: tuple[str, ...] = ()
    capability_id: str | None = None
    obligation: str | None = None
    counterexample: dict[str, Any] | None = None

    @ensure(lambda self, result: result["stage"] == str(self.stage), helper=True)
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out: dict[str, Any] = {"stage": str(self.stage), "code": self.code, "message": self.message}
        if self.policy_ids:
            out["policy_ids"] = list(self.policy_ids)
        if self.capability_id is not None:
            out["capability_id"] = self.capability_id
        if self.obligation is not None:
            out["obligation"] = self.obligation
        if self.counterexample is not None:
            out["counterexample"] = self.counterexample
        return out


_R = TypeVar("_R")

DECISION_JSON_VERSION = 1
"""The version of :meth:`Decision.to_dict`'s form (docs/DECISION_JSON.md); bumped on any change
that removes, renames or retypes a key."""


@dataclass(frozen=True, slots=True)
class Decision:
    """SOP's answer: ALLOW only with every stage passed; reasons say why.

    The keyword-only fields are what a decision carries besides its answer
    (docs/DECISION_JSON.md): each is set by the one component that knows it.

    The answer keeps the attribute name ``effect``: it is the key of the
    signed ``decision`` log entry (which the persistence index and ``sop log``
    read) and of the JSON form, as in Cedar and XACML; the write an ALLOW
    permits is :attr:`write`, never "effect".

    Attributes:
        effect: the :class:`Permission`, ALLOW or DENY.
        reasons: why, stage by stage.
        request_id: the request's id (None for a request that did not parse).
        capability_id: the capability that covered the request, if one was found.
        policy_ids: the policies that decided.
        log_index: this decision's log entry (a refusal's: the refusal entry).
        receipt: that entry's receipt.
        entry_digest: ``sha256:`` of the kernel's log entry for this decision.
        dry_run: True for :meth:`OpsKernel.dry_run`'s answers (never logged).
        decision_index: for a refusal, the log index of the decision it refused.
        write: for an ALLOW the persistence controller carried out, what it wrote.
        record: a protocol's record of what its ALLOW did (its own frozen type).
    """

    effect: Permission
    reasons: tuple[Reason, ...]
    request_id: str | None = None
    capability_id: str | None = None
    policy_ids: tuple[str, ...] = ()
    log_index: int | None = None
    receipt: Receipt | None = None
    _: KW_ONLY
    entry_digest: str | None = None
    dry_run: bool = False
    decision_index: int | None = None
    write: WriteResult | None = None
    record: ProtocolRecord | None = None

    @property
    def allowed(self) -> bool:
        """True only for ALLOW."""
        return self.effect is Permission.ALLOW

    @ensure(lambda write, result: result.write is write, helper=True)
    @ensure(lambda self, result: result.effect is self.effect, helper=True)
    def with_write(self, write: WriteResult) -> Decision:
        """This decision with its :attr:`write` (``dataclasses.replace``, without its cost).

        Returns:
            A new decision; every other field is this one's.
        """
        return Decision(
            self.effect,
            self.reasons,
            self.request_id,
            self.capability_id,
            self.policy_ids,
            self.log_index,
            self.receipt,
            entry_digest=self.entry_digest,
            dry_run=self.dry_run,
            decision_index=self.decision_index,
            write=write,
            record=self.record,
        )

    @ensure(lambda self, result: result is None or result is self.record, helper=True)
    def record_as(self, kind: type[_R]) -> _R | None:
        """The protocol record if it is a ``kind``, else None (a typed read of :attr:`record`)."""
        return self.record if isinstance(self.record, kind) else None

    @ensure(lambda result: result["effect"] in ("ALLOW", "DENY"), helper=True)
    @ensure(lambda result: result["version"] == DECISION_JSON_VERSION, helper=True)
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, version :data:`DECISION_JSON_VERSION` (docs/DECISION_JSON.md)."""
        out: dict[str, Any] = {
            "version": DECISION_JSON_VERSION,
            "effect": str(self.effect),
            "request_id": self.request_id,
            "capability_id": self.capability_id,
            "policy_ids": list(self.policy_ids),
            "reasons": [r.to_dict() for r in self.reasons],
            "log_index": self.log_index,
        }
        if self.receipt is not None:
            out["receipt"] = self.receipt.to_dict()
        if self.entry_digest is not None:
            out["entry_digest"] = self.entry_digest
        if self.dry_run:
            out["dry_run"] = True
        if self.decision_index is not None:
            out["decision_index"] = self.decision_index
        if self.write is not None:
            out["write"] = self.write.to_dict()
        if self.record is not None:
            out.update({k: v for k, v in self.record.json_fields().items() if k not in out})
        return out
