"""What a remote SOP answers, read back: decisions from their JSON form, problems as errors.

:func:`decision_from_json` rebuilds SOP's :class:`~sop_verified.core.request.Decision`
from its version 1 JSON form (docs/DECISION_JSON.md), strictly: the answer is
untrusted input parsed once, here. The keys the form adds for a protocol
(``phase``, ``artifact``, ``output``, ``snapshot``, ...) and keys a later
compatible version adds are kept, unread, in a :class:`RemoteRecord`, so
``to_dict()`` gives back what the server sent. :func:`remote_error` turns an
RFC 9457 problem into a :class:`~sop_verified.errors.RemoteError`.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sop_verified.core.decision_fields import WriteResult
from sop_verified.core.request import Decision, Permission, Reason, Stage
from sop_verified.errors import InputError, RemoteError
from sop_verified.tools.strict_json import loads_unique_keys
from sop_verified.tools.tlog_store import Receipt

__all__ = ["RemoteRecord", "decision_from_json", "load_json", "remote_error"]

_HEX64 = r"^[0-9a-f]{64}$"
_DIGEST = r"^sha256:[0-9a-f]{64}$"
_Index = Field(ge=0)


class _Part(BaseModel):
    # A later compatible version may add optional keys (docs/DECISION_JSON.md): ignored.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class _Reason(_Part):
    stage: Stage = Field(strict=False)
    code: str
    message: str
    policy_ids: tuple[str, ...] = Field(default=(), strict=False)
    capability_id: str | None = None
    obligation: str | None = None
    counterexample: dict[str, Any] | None = None


class _Receipt(_Part):
    index: int = _Index
    leaf_hash: str = Field(pattern=_HEX64)
    tree_size: int = Field(ge=1)
    checkpoint: str | None = None

    def build(self) -> Receipt:
        if self.index >= self.tree_size:
            raise InputError(
                f"receipt index `{self.index}` is not below its tree size `{self.tree_size}`",
                where="receipt",
            )
        return Receipt(self.index, bytes.fromhex(self.leaf_hash), self.tree_size, self.checkpoint)


class _Write(_Part):
    outcome: Literal["written", "unchanged"]
    index: int = _Index
    scope: str
    name: str
    stored: str
    digest: str = Field(pattern=_DIGEST)
    size: int = Field(ge=0)
    version: int | None
    receipt: _Receipt


class _Decision(BaseModel):
    # Unknown top-level keys are the protocol records' (and later versions'): kept.
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    version: Literal[1]
    effect: Literal["ALLOW", "DENY"]
    request_id: str | None
    capability_id: str | None
    policy_ids: tuple[str, ...] = Field(strict=False)
    reasons: tuple[_Reason, ...] = Field(strict=False)
    log_index: int | None = Field(ge=0)
    receipt: _Receipt | None = None
    entry_digest: str | None = Field(default=None, pattern=_DIGEST)
    dry_run: Literal[True] | None = None
    decision_index: int | None = Field(default=None, ge=0)
    write: _Write | None = None


class RemoteRecord:
    """The protocol keys of a remote decision, kept as sent (a :class:`ProtocolRecord`).

    A remote client does not rebuild DRAC's, EMP's or CSP's own records; it
    keeps their keys so that :meth:`Decision.to_dict` returns them unchanged.
    """

    __slots__ = ("_raw",)

    def __init__(self, fields: dict[str, Any]) -> None:
        self._raw = orjson.dumps(fields)

    def json_fields(self) -> dict[str, Any]:
        """The top-level keys, a fresh copy each call."""
        fields: dict[str, Any] = orjson.loads(self._raw)
        return fields

    def __repr__(self) -> str:
        return f"RemoteRecord({self._raw.decode()[:200]})"


def load_json(body: bytes, what: str) -> Any:
    """``body`` as JSON whose objects name each key once.

    Raises:
        InputError: it is not such JSON.
    """
    try:
        return loads_unique_keys(body)
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} is not JSON: {str(exc)[:200]}") from None


def decision_from_json(raw: Any) -> Decision:
    """Rebuild a decision from its JSON form, version 1 (``DECISION_JSON_VERSION``).

    Args:
        raw: the decoded JSON object (untrusted).

    Returns:
        The decision; a record of the keys this parser does not read, when there are any.

    Raises:
        InputError: it is not a version 1 decision, or it breaks the form's rules: a DENY
            without a reason, an ALLOW that was not logged (INV-1, INV-9), a receipt that
            is not the decision entry's.
    """
    try:
        parsed = _Decision.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "decision"
        raise InputError(f"not a decision: {err['msg']}", where=where) from None
    effect = Permission(parsed.effect)
    if effect is Permission.DENY and not parsed.reasons:
        raise InputError("a DENY without a reason", where="reasons")
    if effect is Permission.ALLOW and (parsed.log_index is None or parsed.dry_run):
        raise InputError("an ALLOW that was not logged", where="log_index")  # spec: INV-9
    receipt = None if parsed.receipt is None else parsed.receipt.build()
    if receipt is not None and receipt.index != parsed.log_index:
        raise InputError(
            f"the receipt is for entry `{receipt.index}`, the decision is `{parsed.log_index}`",
            where="receipt.index",
        )
    extra = parsed.model_extra or {}
    return Decision(
        effect,
        tuple(_reason(r) for r in parsed.reasons),
        parsed.request_id,
        parsed.capability_id,
        parsed.policy_ids,
        parsed.log_index,
        receipt,
        entry_digest=parsed.entry_digest,
        dry_run=bool(parsed.dry_run),
        decision_index=parsed.decision_index,
        write=None if parsed.write is None else _write(parsed.write),
        record=RemoteRecord(extra) if extra else None,
    )


def _reason(r: _Reason) -> Reason:
    return Reason(
        r.stage, r.code, r.message, r.policy_ids, r.capability_id, r.obligation, r.counterexample
    )


def _write(w: _Write) -> WriteResult:
    fields = w.model_dump(exclude={"receipt"})
    return WriteResult(**fields, receipt=w.receipt.build())


def remote_error(status: int, body: bytes, media_type: str) -> RemoteError:
    """The error for a problem answer (RFC 9457), or for any other answer that is not a success.

    Args:
        status: the HTTP status.
        body: the answer's body.
        media_type: its ``Content-Type``.

    Returns:
        The error, with the problem's ``code``, ``stage``, ``detail`` and the logged
        decision when the problem carries one.
    """
    problem: Any = None
    if "json" in media_type:
        try:
            problem = load_json(body, "the problem")
        except InputError:
            problem = None
    if not isinstance(problem, dict):
        text = body[:200].decode("utf-8", "replace")
        return RemoteError(status, f"http_{status}", text or f"HTTP {status}")
    decision = None
    if isinstance(problem.get("decision"), dict):
        try:
            decision = decision_from_json(problem["decision"])
        except InputError:
            decision = None  # the error stands without it
    return RemoteError(
        status,
        _text(problem.get("code")) or f"http_{status}",
        _text(problem.get("detail")) or f"HTTP {status}",
        stage=_text(problem.get("stage")),
        decision=decision,
    )


def _text(value: Any) -> str | None:
    return value[:1000] if isinstance(value, str) else None
