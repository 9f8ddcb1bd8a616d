"""What the protocol controllers share: parse once, explain a denial, refuse an effect.

Every protocol operation is a kernel decision followed, on ALLOW only, by
its effect. A rule that refuses the effect after the ALLOW is logged:
for a persist action the refusal is a ``persist.effect`` entry with outcome
``refused`` that closes the pending decision (so boot repair has nothing to
redo and nothing is written); for the others it is a ``protocol.refused``
entry. A DENY at the obligation stage (a derived protocol obligation was
refuted) is explained by the same rule in plain words, and that explanation
is logged too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sop_verified.core.contracts import ensure, require
from sop_verified.core.request import (
    PERSIST_ACTIONS,
    Decision,
    Reason,
    Request,
    Stage,
    parse_request,
)
from sop_verified.errors import InputError, ProtocolError, SOPError
from sop_verified.protocols.ledger import ProtocolLedger
from sop_verified.tools.tlog_store import Receipt

__all__ = [
    "Attest",
    "Submit",
    "diagnose",
    "explain",
    "failure_reason",
    "parse_or_deny",
    "refuse",
    "rule",
]

Submit = Callable[[Request | dict[str, Any]], Decision]
"""The kernel's bridge entry (``OpsKernel.submit``): decides and logs one request."""

Attest = Callable[[str, list[tuple[str, str]], str, dict[str, Any]], Receipt]
"""Sign an in-toto statement (kind, subjects, predicate type, predicate) and log it."""


@require(lambda submit: submit is not None)
def parse_or_deny(submit: Submit, raw: Request | dict[str, Any]) -> Request | Decision:
    """The parsed request, or the kernel's logged DENY of a malformed one."""
    try:
        return parse_request(raw)
    except InputError:
        return submit(raw)  # the kernel records the malformed request and denies it


@ensure(lambda exc, result: result.code == exc.code and result.stage is Stage.PROTOCOL)
def rule(exc: ProtocolError) -> Reason:
    """A protocol rule's refusal as a reason (stage ``protocol``)."""
    return Reason(Stage.PROTOCOL, exc.code, str(exc))


@ensure(lambda result: result.stage in (Stage.PROTOCOL, Stage.INTERNAL))
def failure_reason(exc: BaseException, what: str) -> Reason:
    """A reason for an unexpected failure while carrying out ``what`` (INV-2)."""
    if isinstance(exc, ProtocolError):
        return rule(exc)
    detail = str(exc) if isinstance(exc, SOPError | OSError) else f"`{type(exc).__name__}`"
    return Reason(Stage.INTERNAL, "effect_failed", f"{what} failed: {detail}")


@require(lambda check: check is not None)
def diagnose(check: Callable[[], object]) -> ProtocolError | None:
    """Run a rule check; return its refusal instead of raising it."""
    try:
        check()
    except ProtocolError as exc:
        return exc
    return None


@require(lambda decision: not decision.allowed)
@ensure(lambda result: not result.allowed)
def explain(
    ledger: ProtocolLedger,
    protocol: str,
    decision: Decision,
    request: Request,
    why: ProtocolError | None,
) -> Decision:
    """A kernel DENY, with the protocol rule that a refuted obligation stands for.

    Only a denial at the obligation stage is explained (the caller's capability
    and the policy passed, so the rule is theirs to know); the explanation is
    logged as a ``protocol.refused`` entry naming the decision.
    """
    refuted = any(r.stage is Stage.OBLIGATION for r in decision.reasons)
    if why is None or not refuted:
        return decision
    return ledger.refuse(protocol, decision, request, [rule(why)])


@require(lambda decision: decision.allowed and decision.log_index is not None)
@ensure(lambda result: not result.allowed, "a refusal is a DENY")
def refuse(
    ledger: ProtocolLedger,
    protocol: str,
    decision: Decision,
    request: Request,
    why: Reason,
    *,
    now: int,
) -> Decision:
    """Refuse the effect of a logged ALLOW: nothing is written, the refusal is logged.

    Args:
        ledger: the protocol ledger (its log takes the refusal).
        protocol: ``drac``, ``emp`` or ``csp``.
        decision: the kernel's ALLOW.
        request: its request.
        why: the reason.
        now: the clock reading.

    Returns:
        The DENY; for a persist action its refusal closes the pending decision.
    """
    if request.action not in PERSIST_ACTIONS:
        return ledger.refuse(protocol, decision, request, [why])
    return ledger.refuse_effect(decision, request, why, now=now)  # closes the pending decision
