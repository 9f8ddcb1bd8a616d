"""How the controller answers: reasons, logged refusals, read results."""

from __future__ import annotations

from dataclasses import dataclass

from sop_verified.core.contracts import ensure, require
from sop_verified.core.persistence.entries import EffectOutcome, effect_entry
from sop_verified.core.persistence.ports import EffectLog
from sop_verified.core.ports import Clock
from sop_verified.core.refusals import logged_refusal
from sop_verified.core.request import Decision, Reason, Request, Stage
from sop_verified.storage.persist_index import ObjectRecord
from sop_verified.tools.tlog_store import Receipt

__all__ = ["ReadResult", "reason", "refusal"]


@dataclass(frozen=True, slots=True)
class ReadResult:
    """A read's decision and, when allowed, the verified bytes and their record."""

    decision: Decision
    data: bytes | None = None
    record: ObjectRecord | None = None

    @property
    def allowed(self) -> bool:
        """True only when the bytes were read and verified."""
        return self.decision.allowed and self.data is not None


@require(lambda code: code != "")
@ensure(lambda code, result: result.code == code)
def reason(code: str, message: str, stage: Stage = Stage.PERSISTENCE) -> Reason:
    """A machine-readable reason (stage ``persistence`` unless told otherwise)."""
    return Reason(stage=stage, code=code, message=message)


@require(lambda op: op in ("write", "read"))
@ensure(lambda result: not result.allowed, "a refusal is a DENY")
def refusal(
    log: EffectLog,
    now: Clock,
    decision: Decision,
    request: Request,
    why: Reason,
    *,
    index: int | None,
    op: str = "write",
    record: bool = True,
) -> Decision:
    """A DENY for a refused effect or read, logged as a ``refused`` effect entry.

    Args:
        log: where the refusal is recorded.
        now: the clock.
        decision: the kernel's decision that was refused an effect.
        request: its request.
        why: the reason.
        index: the pending decision this refusal closes (None: it closes nothing).
        op: ``write`` or ``read``.
        record: False when the log is known to be failing.

    Returns:
        The DENY; its ``log_index`` and ``receipt`` are the refusal entry's
        (None when it could not be logged: then the reasons say so too), and
        ``decision_index`` is the refused decision's index.
    """

    def append() -> Receipt:
        entry = effect_entry(
            op=op,
            outcome=EffectOutcome.REFUSED,
            time=now(),
            decision_index=index,
            request_id=request.request_id,
            reasons=(why,),
        )
        return log.append_receipt(entry)

    # spec: INV-2 — the refusal stands even unlogged (logged_refusal says so in its reasons)
    return logged_refusal(decision, request, (why,), append if record else None)
