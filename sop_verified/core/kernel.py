"""The Ops_Kernel: one request in, one decision out, recorded before any effect.

The decision path (DESIGN section 4): schema, health gate, capability,
policy, obligations through the proof gate, then the decision is appended to
the log. ALLOW needs every stage to pass (INV-1); any exception, unknown
verdict or storage error is DENY with a reason (INV-2); denials are logged
too; an ALLOW whose log append fails becomes DENY (INV-9).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sop_verified.core.contracts import ensure, invariant, require
from sop_verified.core.health import Health
from sop_verified.core.obligations import ProofGate, Verdict
from sop_verified.core.ports import Clock, DecisionLog
from sop_verified.core.request import (
    ADMIN_ACTIONS,
    Decision,
    Effect,
    Obligation,
    Reason,
    Request,
    Stage,
    parse_request,
)
from sop_verified.errors import CapabilityError, InputError, SOPError, StorageError
from sop_verified.tools.canonical import canonical_json
from sop_verified.tools.tlog_store import Attachment, LinkedPart, Receipt

__all__ = ["CapabilityChecker", "LinkedEffect", "OpsKernel", "PolicyDecider", "PolicyOutcome"]


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


class CapabilityChecker(Protocol):
    """What the kernel needs of the Capability_Registry."""

    def check(self, token: str, request: Request) -> _HasId:
        """Return the covering capability or raise CapabilityError."""


class PolicyOutcome(Protocol):
    """What the kernel reads of a policy evaluation."""

    @property
    def allowed(self) -> bool: ...

    @property
    def policy_ids(self) -> tuple[str, ...]: ...

    def to_reason(self) -> Reason:
        """This outcome as a policy-stage reason."""


class PolicyDecider(Protocol):
    """What the kernel needs of the active policy set."""

    @property
    def digest(self) -> str: ...

    def evaluate(self, request: Request) -> PolicyOutcome:
        """Evaluate the request; any error must come back as a DENY outcome or raise."""


def _deny(stage: Stage, code: str, message: str, **kw: Any) -> Reason:
    return Reason(stage=stage, code=code, message=message, **kw)


@dataclass(frozen=True, slots=True)
class LinkedEffect:
    """An effect recorded in its ALLOW decision's own durable transaction (ADR 0007).

    ``entry`` builds the effect's log entry from the decision's log index (it
    is called once, by the thread that commits); ``attachments`` are the
    content rows stored in the same transaction.
    """

    entry: Callable[[int], bytes]
    attachments: tuple[Attachment, ...] = ()


def _linked_after_decision(decision: Decision, effect: Receipt | None) -> bool:
    # spec: INV-9 — an effect receipt only for a logged ALLOW, and after its entry
    if effect is None:
        return True
    return decision.allowed and decision.log_index is not None and effect.index > decision.log_index


def _allow_is_complete(result: Decision) -> bool:
    # spec: INV-1, INV-9 — an ALLOW names its capability and policies and has a log index
    if result.effect is not Effect.ALLOW:
        return True
    return bool(result.capability_id and result.policy_ids and result.log_index is not None)


@invariant(lambda self: self._log is not None and self._gate is not None)
class OpsKernel:
    """Decides every operation; holds no state of its own beyond its ports."""

    def __init__(
        self,
        *,
        capabilities: CapabilityChecker,
        policy: Callable[[], PolicyDecider | None],
        proof_gate: ProofGate,
        log: DecisionLog,
        health: Callable[[], Health],
        now: Clock,
        derive: Callable[[Request], Sequence[Obligation]] = lambda _request: (),
    ) -> None:
        self._caps = capabilities
        self._derive = derive
        self._policy = policy
        self._gate = proof_gate
        self._log = log
        self._append_receipt: Callable[[bytes], Receipt] | None = getattr(
            log, "append_receipt", None
        )
        self._health = health
        self._now = now

    @require(lambda raw: raw is not None, "a request is required")
    @ensure(_allow_is_complete, "INV-1/INV-9: ALLOW is complete and logged")
    def submit(self, raw: Request | dict[str, Any] | bytes | str) -> Decision:
        """Decide one request and record the decision in the log.

        Args:
            raw: the request, parsed or as untrusted JSON (dict, bytes or text).

        Returns:
            The decision; ALLOW only when every stage passed and the decision is
            durably logged. Never raises for bad input or internal failures.
        """
        return _submit(self, raw)

    @require(lambda request: isinstance(request, Request), "a parsed request")
    @ensure(lambda result: _allow_is_complete(result[0]), "INV-1/INV-9: ALLOW complete, logged")
    @ensure(lambda result: _linked_after_decision(*result), "INV-9: the effect follows its ALLOW")
    def submit_linked(
        self, request: Request, linked: LinkedEffect
    ) -> tuple[Decision, Receipt | None]:
        """Decide ``request``; on ALLOW, log the decision and ``linked``'s effect together.

        The decision entry and the effect entry (built from the decision's
        index) are appended in one durable transaction with the effect's
        content, so neither is ever stored without the other (ADR 0007); a
        DENY is logged alone.

        Args:
            request: the parsed request.
            linked: the effect an ALLOW carries out.

        Returns:
            The decision, and the effect entry's receipt when the decision is
            an ALLOW recorded with its effect (None otherwise: a DENY, or a log
            that cannot link, whose caller must carry the effect out itself).
            Never raises for internal failures.
        """
        return _record(self, request, _decide_closed(self, request), linked=linked)

    @require(lambda items: all(isinstance(req, Request) for req, _ in items), "parsed requests")
    @ensure(lambda items, result: len(result) == len(items), "one answer per request")
    @ensure(
        lambda items, result: all(
            d.request_id == req.request_id for (req, _), (d, _) in zip(items, result, strict=True)
        ),
        "each answer is its own request's",
    )
    @ensure(
        lambda result: all(_allow_is_complete(d) for d, _ in result),
        "INV-1/INV-9: every ALLOW complete and logged",
    )
    @ensure(
        lambda result: all(_linked_after_decision(d, e) for d, e in result),
        "INV-9: each effect follows its ALLOW",
    )
    def submit_batch(
        self,
        items: Sequence[tuple[Request, LinkedEffect | None]],
    ) -> list[tuple[Decision, Receipt | None]]:
        """Decide several requests, then log every decision (and each ALLOW's linked effect)
        in one durable batch: :meth:`submit_linked` for many callers at once.

        Each request is decided alone, exactly as :meth:`submit_linked` would;
        only the log append is shared (one group-commit ticket, one
        transaction). The contracts are checked once per batch, on every
        answer in it.

        Args:
            items: the parsed requests, each with the effect its ALLOW carries
                out in the same transaction (or None: the decision alone).

        Returns:
            Per request, in order: the decision and the effect entry's receipt
            (None for a DENY, a request without a linked effect, or a log that
            cannot link: its caller must carry the effect out itself). Never
            raises for internal failures: a decision that cannot be logged is
            a DENY.
        """
        return _submit_batch(self, items)

    @require(lambda raw: raw is not None, "a request is required")
    @ensure(lambda result: result.log_index is None, "a dry run records nothing")
    def dry_run(self, raw: Request | dict[str, Any] | bytes | str) -> Decision:
        """Decide without recording: for self-tests and what-if questions, never an effect.

        Args:
            raw: the request.

        Returns:
            The decision the kernel would take now, with ``log_index`` None. It
            authorizes nothing: only :meth:`submit` decisions may precede effects.
        """
        return _dry_run(self, raw)


def _submit_batch(
    k: OpsKernel,
    items: Sequence[tuple[Request, LinkedEffect | None]],
) -> list[tuple[Decision, Receipt | None]]:
    outs = [_decide_closed(k, req) for req, _ in items]
    append_parts = getattr(k._log, "append_parts", None)
    if append_parts is None:  # a log without batches: one append per decision
        return [
            _record(k, req, out, linked=linked)
            for (req, linked), out in zip(items, outs, strict=True)
        ]
    answers: list[tuple[Decision, Receipt | None] | None] = [None] * len(items)
    parts: list[LinkedPart] = []
    at: list[int] = []
    for i, ((req, linked), out) in enumerate(zip(items, outs, strict=True)):
        try:
            payload = _entry_payload(k, req, out)
        except Exception as exc:  # spec: INV-2, INV-9 — no entry, no ALLOW
            answers[i] = (_unlogged(req, out, exc), None)
            continue
        if linked is not None and out[0] is Effect.ALLOW:
            parts.append(LinkedPart(payload, linked.entry, linked.attachments))
        else:
            parts.append(LinkedPart(payload))
        at.append(i)
    try:
        got = append_parts(parts)
        if type(got) is not list or len(got) != len(parts):
            raise StorageError(f"the log answered {len(parts)} parts with `{got!r:.80}`")
    except Exception as exc:  # spec: INV-2, INV-9 — no receipt, no ALLOW
        got = [exc] * len(parts)
    for i, part, g in zip(at, parts, got, strict=True):
        req, out = items[i][0], outs[i]
        try:
            if isinstance(g, BaseException):
                raise g
            receipt, effect_receipt = g
            index = _checked_index(receipt.index)  # spec: INV-9 — durable (with its effect)
            answers[i] = (_logged(req, out, part.first, receipt, index), effect_receipt)
        except Exception as exc:  # spec: INV-2, INV-9 — no log entry, no ALLOW
            answers[i] = (_unlogged(req, out, exc), None)
    return [a for a in answers if a is not None]


def _dry_run(k: OpsKernel, raw: Request | dict[str, Any] | bytes | str) -> Decision:
    try:
        request = parse_request(raw)
        effect, reasons, cap_id, policy_ids = _decide(k, request)
    except InputError as exc:
        return Decision(Effect.DENY, (_deny(Stage.SCHEMA, "bad_request", str(exc)),))
    except Exception as exc:  # spec: INV-2
        reason = _deny(Stage.INTERNAL, "internal_error", f"decision failed: `{type(exc).__name__}`")
        return Decision(Effect.DENY, (reason,))
    return Decision(
        effect, reasons, request.request_id, cap_id, policy_ids, None, {"dry_run": True}
    )


def _submit(k: OpsKernel, raw: Request | dict[str, Any] | bytes | str) -> Decision:
    try:
        request = parse_request(raw)
    except InputError as exc:
        out: _Outcome = (Effect.DENY, (_deny(Stage.SCHEMA, "bad_request", str(exc)),), None, ())
        return _record(k, None, out, raw_digest=_raw_digest(raw))[0]
    except Exception as exc:  # spec: INV-2 — anything unexpected while parsing is DENY
        why = f"request parsing failed: `{type(exc).__name__}`"
        out = (Effect.DENY, (_deny(Stage.INTERNAL, "internal_error", why),), None, ())
        return _record(k, None, out, raw_digest=_raw_digest(raw))[0]
    return _record(k, request, _decide_closed(k, request))[0]


def _decide_closed(k: OpsKernel, req: Request) -> _Outcome:
    """:func:`_decide`, with any exception turned into DENY (INV-2)."""
    try:
        return _decide(k, req)
    except Exception as exc:  # spec: INV-2 — fail closed on any exception
        why = _deny(Stage.INTERNAL, "internal_error", f"decision failed: `{type(exc).__name__}`")
        return Effect.DENY, (why,), None, ()


def _decide(k: OpsKernel, req: Request) -> _Outcome:
    health = k._health()
    if health is not Health.READY:  # spec: INV-1, INV-8 — only READY admits
        return (
            Effect.DENY,
            (_deny(Stage.HEALTH, "not_ready", f"SOP is `{health}`, not `READY`"),),
            None,
            (),
        )
    if req.channel == "bridge" and req.action in ADMIN_ACTIONS:  # spec: INV-6
        msg = f"admin action `{req.action}` cannot arrive through the bridge"
        return Effect.DENY, (_deny(Stage.SCHEMA, "admin_via_bridge", msg),), None, ()
    try:
        cap = k._caps.check(req.capability, req)  # spec: INV-1 — valid capability
    except CapabilityError as exc:
        reason = _deny(Stage.CAPABILITY, exc.code, str(exc), capability_id=exc.capability_id)
        return Effect.DENY, (reason,), exc.capability_id, ()
    policy = k._policy()
    if policy is None:  # empty means deny
        return (
            Effect.DENY,
            (_deny(Stage.POLICY, "no_policy", "no policy set is active"),),
            cap.id,
            (),
        )
    outcome = policy.evaluate(req)
    if not outcome.allowed:  # spec: INV-1 — a permit matches and no forbid matches
        return Effect.DENY, (outcome.to_reason(),), cap.id, outcome.policy_ids
    denials = _check_obligations(k, req)
    if denials:  # spec: INV-1 — every obligation PROVED
        return Effect.DENY, denials, cap.id, outcome.policy_ids
    return Effect.ALLOW, (outcome.to_reason(),), cap.id, outcome.policy_ids


def _check_obligations(k: OpsKernel, req: Request) -> tuple[Reason, ...]:
    """SOP's own obligations for this operation, then the attached ones: all must be PROVED."""
    out = []
    for ob in (*k._derive(req), *req.obligations):
        result = k._gate.check(ob)
        if result.verdict is not Verdict.PROVED:
            ce = result.evidence.get("model") if result.verdict is Verdict.REFUTED else None
            out.append(
                _deny(
                    Stage.OBLIGATION,
                    f"obligation_{result.verdict.value.lower()}",
                    result.reason or f"obligation `{ob.id}` is `{result.verdict}`",
                    obligation=ob.id,
                    counterexample=ce,
                )
            )
    return tuple(out)


def _raw_digest(raw: object) -> str:
    try:
        if isinstance(raw, bytes | str):
            data = raw.encode("utf-8", "replace") if isinstance(raw, str) else raw
        else:
            data = repr(raw).encode("utf-8", "replace")
    except Exception:  # spec: INV-2 — a digest failure must not escape
        data = b""
    return "sha256:" + hashlib.sha256(data).hexdigest()


_Outcome = tuple[Effect, tuple[Reason, ...], str | None, tuple[str, ...]]
"""What deciding gives: the effect, its reasons, the capability id and the policy ids."""


def _entry_payload(
    k: OpsKernel, req: Request | None, out: _Outcome, raw_digest: str | None = None
) -> bytes:
    """The decision's log entry, canonical JSON (RFC 8785)."""
    effect, reasons, cap_id, policy_ids = out
    entry: dict[str, Any] = {
        "type": "decision",
        "time": k._now(),
        "effect": str(effect),
        "capability_id": cap_id,
        "policy_ids": list(policy_ids),
        "reasons": [r.to_dict() for r in reasons],
    }
    if req is not None:
        entry["request"] = req.to_dict()
    else:
        entry["malformed_request_digest"] = raw_digest
    return canonical_json(entry)


def _unlogged(req: Request | None, out: _Outcome, exc: BaseException) -> Decision:
    """The DENY for a decision whose entry could not be logged (INV-9: no entry, no ALLOW)."""
    effect, reasons, cap_id, policy_ids = out
    detail = str(exc) if isinstance(exc, SOPError | OSError) else f"`{type(exc).__name__}`"
    failure = _deny(Stage.LOG, "log_append_failed", f"the decision could not be logged: {detail}")
    kept = reasons if effect is Effect.DENY else ()
    request_id = req.request_id if req else None
    return Decision(Effect.DENY, (*kept, failure), request_id, cap_id, policy_ids, None)


def _logged(
    req: Request | None, out: _Outcome, payload: bytes, receipt: Receipt | None, index: int
) -> Decision:
    """The decision, recorded at ``index`` (its entry's digest and receipt attached)."""
    effect, reasons, cap_id, policy_ids = out
    return Decision(
        effect,
        reasons,
        req.request_id if req else None,
        cap_id,
        policy_ids,
        index,
        {"entry_digest": "sha256:" + hashlib.sha256(payload).hexdigest()},  # encoded once
        receipt,
    )


def _record(
    k: OpsKernel,
    req: Request | None,
    out: _Outcome,
    *,
    raw_digest: str | None = None,
    linked: LinkedEffect | None = None,
) -> tuple[Decision, Receipt | None]:
    """Append the decision to the log; an ALLOW that cannot be logged is DENY (INV-9).

    With ``linked`` and an ALLOW, the effect entry and its content go in the
    same transaction, and its receipt is returned beside the decision.
    """
    effect_receipt = None
    try:
        payload = _entry_payload(k, req, out, raw_digest)
        append_linked = getattr(k._log, "append_linked", None)
        if linked is not None and out[0] is Effect.ALLOW and append_linked is not None:
            receipt, effect_receipt = append_linked(payload, linked.entry, linked.attachments)
            index = _checked_index(receipt.index)  # spec: INV-9 — durable with its effect
        else:
            index, receipt = _append(k, payload)  # spec: INV-9 — durable first
    except Exception as exc:  # spec: INV-2, INV-9 — no log entry, no ALLOW
        return _unlogged(req, out, exc), None
    return _logged(req, out, payload, receipt, index), effect_receipt


def _append(k: OpsKernel, payload: bytes) -> tuple[int, Receipt | None]:
    """Append through the receipt-giving method when the log has one; check the index."""
    receipt = None
    if k._append_receipt is not None:
        receipt = k._append_receipt(payload)
        index: object = receipt.index if isinstance(receipt, Receipt) else None
    else:
        index = k._log.append(payload)
    return _checked_index(index), receipt


def _checked_index(index: object) -> int:
    if type(index) is not int or index < 0:  # spec: INV-9 — no index, nothing was recorded
        raise StorageError(f"the log returned `{index!r}` instead of an entry index")
    return index
