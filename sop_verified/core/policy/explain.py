"""Which policies of a set applied to a request, and what each condition said.

:class:`~sop_verified.core.policy.evaluator.PolicySet` answers with the
determining policies only (the matching permits, or the forbids, or the
erroring ones). A person looking at a surprising answer wants more: every
policy whose scope covered the request, and for each whether its `when`
held, failed or raised. :func:`explain` gives that, by the semantics of
spec/POLICY_LANGUAGE.md section 5 read straight from the document (no index),
so it also cross-checks the fast evaluator: the determining policies it
implies must be the ones the evaluator names (tests/core/policy/test_explain.py).
It is a diagnostic: nothing decides on it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from sop_verified.core.contracts import ensure
from sop_verified.core.policy.compiler import compile_condition
from sop_verified.core.policy.model import Policy, PolicyDocument
from sop_verified.core.request import Request
from sop_verified.errors import PolicyEvaluationError
from sop_verified.tools.paths import Glob

__all__ = ["Applied", "Condition", "explain"]


class Condition(enum.StrEnum):
    """What an applying policy's `when` said about the request."""

    NONE = "none"
    """The policy has no condition: it matches whenever it applies."""
    TRUE = "true"
    FALSE = "false"
    ERROR = "error"
    """Evaluation failed (an absent attribute): the whole decision is DENY."""


@dataclass(frozen=True, slots=True)
class Applied:
    """One policy whose scope (principal, action, resource, channel) covered the request."""

    id: str
    effect: str
    condition: Condition
    error: str = ""

    @property
    def matched(self) -> bool:
        """True when the policy matched: it applied and its condition held (or it has none)."""
        return self.condition in (Condition.NONE, Condition.TRUE)

    @ensure(lambda self, result: result["id"] == self.id, "the form names this policy")
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"id", "effect", "condition", "matched"}`` and ``error`` if any."""
        out: dict[str, Any] = {
            "id": self.id,
            "effect": self.effect,
            "condition": str(self.condition),
            "matched": self.matched,
        }
        if self.error:
            out["error"] = self.error
        return out


def _scope_covers(doc: PolicyDocument, policy: Policy, request: Request) -> bool:
    principals = doc.principals_of(policy)
    if principals is not None and request.principal not in principals:
        return False
    if policy.actions is not None and request.action not in policy.actions:
        return False
    if policy.channel is not None and policy.channel != request.channel:
        return False
    if policy.resources is None:
        return True
    return any(Glob(g).matches(request.resource) for g in policy.resources)


def _condition(policy: Policy, request: Request) -> tuple[Condition, str]:
    if policy.when is None:
        return Condition.NONE, ""
    try:
        held = compile_condition(policy.when)(request)
    except PolicyEvaluationError as exc:
        return Condition.ERROR, str(exc)
    return (Condition.TRUE, "") if held is True else (Condition.FALSE, "")


@ensure(
    lambda document, result: (
        [a.id for a in result]
        == [p.id for p in document.policies if p.id in {a.id for a in result}]
    ),
    "each applying policy once, in the document's order",
)
def explain(document: PolicyDocument, request: Request) -> tuple[Applied, ...]:
    """Every policy of ``document`` whose scope covers ``request``, with its condition's answer.

    Args:
        document: a checked policy document.
        request: a validated request.

    Returns:
        The applying policies, ordered by id. The decision they imply (section 5):
        DENY if any condition errs, else DENY if a forbid matched, else ALLOW if a
        permit matched, else DENY.
    """
    out = []
    for policy in document.policies:
        if _scope_covers(document, policy, request):
            said, error = _condition(policy, request)
            out.append(Applied(policy.id, str(policy.effect), said, error))
    return tuple(out)
