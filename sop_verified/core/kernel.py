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
from typing import Any, Protocol, assert_never

from sop_verified.core.contracts import ensure, invariant, require
from sop_verified.core.health import Health
from sop_verified.core.obligations import ProofGate, Verdict, denial_code
from sop_verified.core.ports import Clock, DecisionLog
from sop_verified.core.request import (
    ADMIN_ACTIONS,
    Decision,
    Obligation,
    Permission,
    Reason,
    Request,
    Stage,
    parse_request,
)
from sop_verified.errors import (
    CapabilityError,
    InputError,
    KeyDecidedError,
    SOPError,
    StateMovedError,
    StorageError,
)
from sop_verified.tools.canonical import canonical_json
from sop_verified.tools.tlog_store import Attachment, LinkedPart, Receipt

__all__ = [
    "CapabilityChecker",
    "LinkedEffect",
    "OpsKernel",
    "PolicyDecider",
    "PolicyOutcome",
    "StageResult",
]

REDECIDE_ATTEMPTS = 8
"""How often a batch is decided again when another replica changed the state first."""


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


class CapabilityChecker(Protocol):
    """What the kernel needs of the Capability_Registry."""

    def check(self, token: str, request: Request) -> _HasId:
        """Return the covering capability or raise CapabilityError."""

    def check_many(
        self, pairs: Sequence[tuple[str, Request]]
    ) -> Sequence[_HasId | CapabilityError]:
        """Per (token, request), in order: the covering capability or the error (returned)."""


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

    def evaluate_many(self, requests: Sequence[Request]) -> Sequence[PolicyOutcome]:
        """Per request, in order, what :meth:`evaluate` returns for it."""


def _deny(stage: Stage, code: str, message: str, **kw: Any) -> Reason:
    return Reason(stage=stage, code=code, message=message, **kw)


@dataclass(frozen=True, slots=True)
class StageResult:
    """What the decision stages give, before the log: the answer and what it rests on."""

    effect: Permission
    reasons: tuple[Reason, ...]
    capability_id: str | None = None
    policy_ids: tuple[str, ...] = ()
    policy_digest: str | None = None
    """The policy set the decision was evaluated against (None: it stopped before that stage)."""


def _at_the_door(out: StageResult) -> bool:
    """Whether ``out`` is the DENY of a SOP that is not READY (nothing else was looked at).

    Its log entry does not carry the call's idempotency key: the key names the decision
    that answered the call, and a retry once SOP is READY again is decided then, so the
    key has one decision entry, never one per refused retry.
    """
    return bool(out.reasons) and out.reasons[0].stage is Stage.HEALTH


def _denied(why: Reason, capability_id: str | None = None) -> StageResult:
    return StageResult(Permission.DENY, (why,), capability_id)


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
    match result.effect:
        case Permission.ALLOW:
            return bool(result.capability_id and result.policy_ids and result.log_index is not None)
        case Permission.DENY:
            return True
        case _:
            assert_never(result.effect)


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
        self._health = health
        self._now = now
        self._claimed: Callable[[str, str], int | None] = _unclaimed

    @ensure(lambda self, claimed: self._claimed is claimed, "the key claims asked from now on")
    def follow_claims(self, claimed: Callable[[str, str], int | None]) -> None:
        """Ask ``claimed(owner, key)`` before logging a decision that carries an idempotency key.

        ``claimed`` names the log index of the decision first made with ``key`` by
        the same ``owner`` (the transport's principal, ``-`` for none), or None. A
        decision whose key is claimed is not logged (it would be the key's second
        decision) and is DENY, ``log/idempotency_key_decided``: the caller answers with
        the first one (``sop serve``, across the replicas of a shared log).
        """
        self._claimed = claimed

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
        return self._submit(raw)

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
        """Decide several requests, then log every decision in one durable batch; an ALLOW
        with a linked effect is logged with it (ADR 0007, ADR 0008).

        Each request meets the same stages as :meth:`submit` (stage by stage
        over the batch, each component called once for the requests still
        standing); an ALLOW with a linked effect is appended with the effect's
        entry (built from the decision's index) and content in the same
        transaction, so neither is ever stored without the other; a DENY is
        logged alone. The contracts are checked once per batch, on every
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
        return self._submit_batch(items)

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
        return self._dry_run(raw)

    def _submit_batch(
        self,
        items: Sequence[tuple[Request, LinkedEffect | None]],
    ) -> list[tuple[Decision, Receipt | None]]:
        for _ in range(REDECIDE_ATTEMPTS):
            try:
                return self._decide_and_log(items)
            except StateMovedError:  # spec: INV-9 — another replica changed the state first:
                continue  # nothing was written; decide again on the state now in force
        moved = StorageError(
            f"another replica changed the state under this batch `{REDECIDE_ATTEMPTS}` times"
        )
        outs = self._decide_all_closed([req for req, _ in items])
        return [
            (_unlogged(req, out, moved), None) for (req, _), out in zip(items, outs, strict=True)
        ]

    def _decide_and_log(
        self,
        items: Sequence[tuple[Request, LinkedEffect | None]],
    ) -> list[tuple[Decision, Receipt | None]]:
        """One attempt of :meth:`_submit_batch`; raises only :class:`StateMovedError`."""
        outs = self._decide_all_closed([req for req, _ in items])
        answers: list[tuple[Decision, Receipt | None] | None] = [None] * len(items)
        parts: list[LinkedPart] = []
        at: list[int] = []
        for i, ((req, linked), out) in enumerate(zip(items, outs, strict=True)):
            try:
                payload = self._entry_payload(req, out)
            except Exception as exc:  # spec: INV-2, INV-9 — no entry, no ALLOW
                answers[i] = (_unlogged(req, out, exc), None)
                continue
            if linked is not None and out.effect is Permission.ALLOW:
                parts.append(LinkedPart(payload, linked.entry, linked.attachments))
            else:
                parts.append(LinkedPart(payload))
            at.append(i)
        try:
            got = self._log.append_parts(parts)
            if type(got) is not list or len(got) != len(parts):
                raise StorageError(f"the log answered {len(parts)} parts with `{got!r:.80}`")
        except StateMovedError:
            raise
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

    def _dry_run(self, raw: Request | dict[str, Any] | bytes | str) -> Decision:
        try:
            request = parse_request(raw)
            out = self._decide(request)
        except InputError as exc:
            return Decision(Permission.DENY, (_deny(Stage.SCHEMA, "bad_request", str(exc)),))
        except Exception as exc:  # spec: INV-2
            reason = _deny(
                Stage.INTERNAL, "internal_error", f"decision failed: `{type(exc).__name__}`"
            )
            return Decision(Permission.DENY, (reason,))
        return Decision(
            out.effect,
            out.reasons,
            request.request_id,
            out.capability_id,
            out.policy_ids,
            dry_run=True,
        )

    def _submit(self, raw: Request | dict[str, Any] | bytes | str) -> Decision:
        try:
            request = parse_request(raw)
        except InputError as exc:
            out = _denied(_deny(Stage.SCHEMA, "bad_request", str(exc)))
            return self._record(None, out, raw_digest=_raw_digest(raw))[0]
        except Exception as exc:  # spec: INV-2 — anything unexpected while parsing is DENY
            why = f"request parsing failed: `{type(exc).__name__}`"
            out = _denied(_deny(Stage.INTERNAL, "internal_error", why))
            return self._record(None, out, raw_digest=_raw_digest(raw))[0]
        return self._record(request, self._decide_closed(request))[0]

    def _decide_closed(self, req: Request) -> StageResult:
        """:meth:`_decide`, with any exception turned into DENY (INV-2)."""
        try:
            return self._decide(req)
        except Exception as exc:  # spec: INV-2 — fail closed on any exception
            why = _deny(
                Stage.INTERNAL, "internal_error", f"decision failed: `{type(exc).__name__}`"
            )
            return _denied(why)

    def _decide_all_closed(self, reqs: Sequence[Request]) -> list[StageResult]:
        """:meth:`_decide_many`; if it raises, each request is decided alone, failing closed."""
        try:
            return self._decide_many(reqs)
        except Exception:  # spec: INV-2 — one request's failure must not decide the others
            return [self._decide_closed(req) for req in reqs]

    def _decide(self, req: Request) -> StageResult:
        return self._decide_many([req])[0]

    def _decide_many(self, reqs: Sequence[Request]) -> list[StageResult]:
        """Decide each request, stage by stage over all of them (DESIGN section 4).

        Every request goes through the same stages in the same order as it would
        alone (health, bridge admin, capability, policy, obligations) and stops at
        the first that denies it; a stage's component is called once for all the
        requests still standing, so its contracts are checked once per batch.
        """
        health = self._health()
        if health is not Health.READY:  # spec: INV-1, INV-8 — only READY admits
            why = _deny(Stage.HEALTH, "not_ready", f"SOP is `{health}`, not `READY`")
            return [_denied(why) for _ in reqs]
        out: list[StageResult | None] = [None] * len(reqs)
        live: list[int] = []
        for i, req in enumerate(reqs):
            refused = _bridge_refusal(req)
            if refused is not None:
                out[i] = _denied(refused)
            else:
                live.append(i)
        caps = self._check_capabilities([(reqs[i].capability, reqs[i]) for i in live])
        held: list[tuple[int, str]] = []
        for i, cap in zip(live, caps, strict=True):
            if isinstance(cap, CapabilityError):  # spec: INV-1 — valid capability
                why = _deny(Stage.CAPABILITY, cap.code, str(cap), capability_id=cap.capability_id)
                out[i] = _denied(why, cap.capability_id)
            else:
                held.append((i, cap.id))
        policy = self._policy() if held else None
        if policy is None:  # empty means deny
            for i, cap_id in held:
                why = _deny(Stage.POLICY, "no_policy", "no policy set is active")
                out[i] = _denied(why, cap_id)
            held = []
        outcomes = _evaluate(policy, [reqs[i] for i, _ in held]) if policy is not None else []
        permitted: list[tuple[int, str, PolicyOutcome]] = []
        digest = policy.digest if policy is not None else None  # stamped on each decision
        for (i, cap_id), outcome in zip(held, outcomes, strict=True):
            if not outcome.allowed:  # spec: INV-1 — a permit matches and no forbid matches
                given = (outcome.to_reason(),)
                out[i] = StageResult(Permission.DENY, given, cap_id, outcome.policy_ids, digest)
            else:
                permitted.append((i, cap_id, outcome))
        denials = self._check_obligations([reqs[i] for i, _, _ in permitted])
        for (i, cap_id, outcome), denied in zip(permitted, denials, strict=True):
            if denied:  # spec: INV-1 — every obligation PROVED
                out[i] = StageResult(Permission.DENY, denied, cap_id, outcome.policy_ids, digest)
            else:
                given = (outcome.to_reason(),)
                out[i] = StageResult(Permission.ALLOW, given, cap_id, outcome.policy_ids, digest)
        decided = [o for o in out if o is not None]
        if len(decided) != len(reqs):  # spec: INV-2 — never an answer out of place
            raise RuntimeError("a request was left undecided")
        return decided

    def _check_capabilities(
        self, pairs: list[tuple[str, Request]]
    ) -> list[_HasId | CapabilityError]:
        """The registry's answer for each (token, request): its capability or its refusal."""
        return list(self._caps.check_many(pairs))

    def _check_obligations(self, reqs: list[Request]) -> list[tuple[Reason, ...]]:
        """Per request, its denials: derived obligations, then attached ones, must be PROVED."""
        obligations = [(*self._derive(req), *req.obligations) for req in reqs]
        flat = [ob for obs in obligations for ob in obs]
        results = self._gate.check_many(flat)
        out: list[tuple[Reason, ...]] = []
        at = 0
        for obs in obligations:
            denied = []
            for ob, result in zip(obs, results[at : at + len(obs)], strict=True):
                if type(result.verdict) is not Verdict:  # spec: INV-2 — no verdict, no ALLOW
                    raise TypeError(f"the proof gate answered `{result.verdict!r:.40}`")
                code = denial_code(result.verdict)
                if code is not None:  # spec: INV-1 — anything but PROVED denies
                    ce = result.evidence.get("model") if code == "obligation_refuted" else None
                    denied.append(
                        _deny(
                            Stage.OBLIGATION,
                            code,
                            result.reason or f"obligation `{ob.id}` is `{result.verdict}`",
                            obligation=ob.id,
                            counterexample=ce,
                        )
                    )
            out.append(tuple(denied))
            at += len(obs)
        return out

    def _entry_payload(
        self, req: Request | None, out: StageResult, raw_digest: str | None = None
    ) -> bytes:
        """The decision's log entry, canonical JSON (RFC 8785)."""
        entry: dict[str, Any] = {
            "type": "decision",
            "time": self._now(),
            "effect": str(out.effect),
            "capability_id": out.capability_id,
            "policy_ids": list(out.policy_ids),
            "reasons": [r.to_dict() for r in out.reasons],
        }
        if out.policy_digest is not None:  # which policy set decided: replicas may differ
            entry["policy_digest"] = out.policy_digest
        if req is not None:
            entry["request"] = req.to_dict()
            transport = req.transport  # one lookup: pydantic's private attributes are slow
            said = {} if transport is None else transport.to_dict()
            if transport is not None and transport.idempotency_key is not None:
                if _at_the_door(out):  # not READY: refused before any check, the key stays free
                    del said["idempotency_key"]
                else:
                    self._check_unclaimed(transport.principal or "-", transport.idempotency_key)
            if said:
                entry["transport"] = said  # a retry and a trace find this entry
        else:
            entry["malformed_request_digest"] = raw_digest
        return canonical_json(entry)

    def _check_unclaimed(self, owner: str, key: str) -> None:
        """Refuse to log a second decision for an idempotency key (one decision per key).

        Raises:
            KeyDecidedError: the key's decision is in the log already.
        """
        first = self._claimed(owner, key)
        if first is not None:
            raise KeyDecidedError(
                f"idempotency key `{key}` was decided at log index `{first}` (by another"
                " replica while this call ran); that decision is the answer",
                first,
            )

    def _record(
        self, req: Request | None, out: StageResult, *, raw_digest: str | None = None
    ) -> tuple[Decision, Receipt | None]:
        """Append the decision to the log; an ALLOW that cannot be logged is DENY (INV-9).

        Returns:
            The decision, and None: no effect is linked to it.
        """
        for _ in range(REDECIDE_ATTEMPTS):
            try:
                payload = self._entry_payload(req, out, raw_digest)
                index, receipt = self._append(payload)  # spec: INV-9 — durable first
            except StateMovedError:  # spec: INV-9 — another replica changed the state first:
                if req is not None:  # nothing was written; decide again on the state in force
                    out = self._decide_closed(req)
                continue
            except Exception as exc:  # spec: INV-2, INV-9 — no log entry, no ALLOW
                return _unlogged(req, out, exc), None
            return _logged(req, out, payload, receipt, index), None
        moved = StorageError(f"another replica changed the state `{REDECIDE_ATTEMPTS}` times")
        return _unlogged(req, out, moved), None

    def _append(self, payload: bytes) -> tuple[int, Receipt]:
        """Append the entry, taking its receipt; check the index the receipt names."""
        receipt = self._log.append_receipt(payload)
        index: object = receipt.index if isinstance(receipt, Receipt) else None
        return _checked_index(index), receipt


def _bridge_refusal(req: Request) -> Reason | None:
    """Why the bridge refuses ``req`` before any capability is looked at, or None (INV-6).

    Every request the kernel decides arrived through the Runtime Bridge: its
    channel is where it came in, not what its body claims. A body naming the
    ``admin`` channel would otherwise reach the policies written for the admin
    plane, so it is refused; so is an admin action.
    """
    transport = req.transport
    if transport is not None and transport.principal not in (None, req.principal):
        # spec: INV-6 — the principal is the transport's (the client certificate's), not the body's
        msg = (
            f"the request names principal `{req.principal}` but the transport authenticated"
            f" `{transport.principal}`; send requests as the principal of your certificate"
        )
        return _deny(Stage.SCHEMA, "principal_mismatch", msg)
    if req.channel != "bridge":  # spec: INV-6 — the channel is the entry point's, not the caller's
        msg = (
            f"a request through the bridge cannot name channel `{req.channel}`; omit `channel`"
            " or send `bridge` (admin changes go through the admin plane: `sop cap`,"
            " `sop policy activate`)"
        )
        return _deny(Stage.SCHEMA, "admin_channel_via_bridge", msg)
    if req.action in ADMIN_ACTIONS:  # spec: INV-6
        msg = f"admin action `{req.action}` cannot arrive through the bridge"
        return _deny(Stage.SCHEMA, "admin_via_bridge", msg)
    return None


def _evaluate(policy: PolicyDecider, requests: list[Request]) -> list[PolicyOutcome]:
    return list(policy.evaluate_many(requests))


def _raw_digest(raw: object) -> str:
    try:
        if isinstance(raw, bytes | str):
            data = raw.encode("utf-8", "replace") if isinstance(raw, str) else raw
        else:
            data = repr(raw).encode("utf-8", "replace")
    except Exception:  # spec: INV-2 — a digest failure must not escape
        data = b""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _unclaimed(owner: str, key: str) -> None:
    """No key is claimed (a kernel no server follows)."""
    del owner, key


def _unlogged(req: Request | None, out: StageResult, exc: BaseException) -> Decision:
    """The DENY for a decision whose entry could not be logged (INV-9: no entry, no ALLOW)."""
    detail = str(exc) if isinstance(exc, SOPError | OSError) else f"`{type(exc).__name__}`"
    code = "idempotency_key_decided" if isinstance(exc, KeyDecidedError) else "log_append_failed"
    failure = _deny(Stage.LOG, code, f"the decision could not be logged: {detail}")
    kept = _kept_reasons(out)
    request_id = req.request_id if req else None
    return Decision(
        Permission.DENY, (*kept, failure), request_id, out.capability_id, out.policy_ids, None
    )


def _kept_reasons(out: StageResult) -> tuple[Reason, ...]:
    """What an unlogged decision keeps of its reasons: a DENY's; an ALLOW's no longer hold."""
    match out.effect:
        case Permission.DENY:
            return out.reasons
        case Permission.ALLOW:
            return ()
        case _:
            assert_never(out.effect)


def _logged(
    req: Request | None, out: StageResult, payload: bytes, receipt: Receipt | None, index: int
) -> Decision:
    """The decision, recorded at ``index`` (its entry's digest and receipt attached)."""
    return Decision(
        out.effect,
        out.reasons,
        req.request_id if req else None,
        out.capability_id,
        out.policy_ids,
        index,
        receipt,
        entry_digest="sha256:" + hashlib.sha256(payload).hexdigest(),  # encoded once
    )


def _checked_index(index: object) -> int:
    if type(index) is not int or index < 0:  # spec: INV-9 — no index, nothing was recorded
        raise StorageError(f"the log returned `{index!r}` instead of an entry index")
    return index
