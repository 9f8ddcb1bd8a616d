"""One builder for a logged refusal: the DENY that answers a refused effect.

A refusal comes after the kernel's decision: the persistence controller
refuses a write or a read, a protocol controller refuses the effect of an
ALLOW or explains a DENY. Each records its own entry (a ``persist.effect``
with outcome ``refused``, or a ``protocol.refused``), and each answers with
the same DENY, built here: the reasons, then ``log_append_failed`` if the
entry could not be appended (the refusal stands even unlogged, INV-2), the
refused decision's capability and policies, the refusal entry's index and
receipt, and ``decision_index``, the refused decision's index.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sop_verified.core.contracts import ensure, require
from sop_verified.core.request import Decision, Permission, Reason, Request, Stage
from sop_verified.tools.tlog_store import Receipt

__all__ = ["logged_refusal"]


@require(lambda reasons: len(reasons) > 0, "a refusal says why")
@ensure(lambda result: not result.allowed, "a refusal is a DENY")
@ensure(
    lambda decision, result: result.decision_index == decision.log_index,
    "the refusal names the decision it refuses",
    helper=True,
)
@ensure(lambda result: (result.receipt is None) == (result.log_index is None), helper=True)
def logged_refusal(
    decision: Decision,
    request: Request,
    reasons: Sequence[Reason],
    append: Callable[[], Receipt] | None,
    *,
    kept: Sequence[Reason] = (),
) -> Decision:
    """Append the refusal's entry, then answer DENY with ``reasons`` first.

    Args:
        decision: the kernel's decision whose effect is refused (or whose DENY is explained).
        request: its request.
        reasons: why.
        append: appends the refusal's entry and returns its receipt; None when the
            log is known to be failing (nothing is tried, and the reasons are kept as given).
        kept: reasons that follow the refusal's own (e.g. the kernel's DENY reasons).

    Returns:
        The DENY; its ``log_index`` and ``receipt`` are the refusal entry's (None when
        it could not be logged: then a ``log_append_failed`` reason says so).
    """
    said = tuple(reasons)
    receipt: Receipt | None = None
    if append is not None:
        try:
            receipt = append()
        except Exception as exc:  # spec: INV-2 — the refusal stands even unlogged
            failed = Reason(Stage.LOG, "log_append_failed", f"`{type(exc).__name__}`: {exc}")
            said = (*said, failed)
    return Decision(
        Permission.DENY,
        (*said, *kept),
        request.request_id,
        decision.capability_id,
        decision.policy_ids,
        None if receipt is None else receipt.index,
        receipt,
        decision_index=decision.log_index,
    )
