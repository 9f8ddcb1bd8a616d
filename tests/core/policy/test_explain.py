"""`explain`: the policies that applied to a request imply the evaluator's very answer.

Hypothesis generates policy sets and requests (the differential tests' strategies);
the answer spec/POLICY_LANGUAGE.md section 5 derives from the applying policies
(any error denies, then a matching forbid, then a matching permit, else default
deny) must be the fast evaluator's effect, reason and determining policies.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from policy_strategies import policy_documents, requests

from sop_verified.core.policy.evaluator import PolicyReason, PolicySet
from sop_verified.core.policy.explain import Applied, Condition, explain
from sop_verified.core.policy.loader import document_from_dict
from sop_verified.core.policy.model import PolicyDocument
from sop_verified.core.request import Permission, Request


def _implied(applied: tuple[Applied, ...]) -> tuple[Permission, PolicyReason, frozenset[str]]:
    errors = frozenset(a.id for a in applied if a.condition is Condition.ERROR)
    if errors:
        return Permission.DENY, PolicyReason.EVALUATION_ERROR, errors
    forbids = frozenset(a.id for a in applied if a.matched and a.effect == "forbid")
    if forbids:
        return Permission.DENY, PolicyReason.FORBIDDEN, forbids
    permits = frozenset(a.id for a in applied if a.matched and a.effect == "permit")
    if permits:
        return Permission.ALLOW, PolicyReason.PERMITTED, permits
    return Permission.DENY, PolicyReason.NO_PERMIT, frozenset()


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy_documents(), st.lists(requests(), min_size=1, max_size=6))
def test_the_applying_policies_imply_the_evaluators_answer(
    doc: PolicyDocument, reqs: list[Request]
) -> None:
    fast = PolicySet(doc)
    for r in reqs:
        result = fast.evaluate(r)
        implied = _implied(explain(doc, r))
        assert implied == (result.effect, result.reason, frozenset(result.policy_ids)), (
            doc.to_canonical(),
            r.to_dict(),
            result,
        )


def test_explain_names_scope_matches_and_what_each_condition_said() -> None:
    doc = document_from_dict(
        {
            "policy": [
                {
                    "id": "small",
                    "effect": "permit",
                    "principal": ["drac"],
                    "action": ["artifact.persist"],
                    "resource": ["artifacts/**"],
                    "when": "context.size_bytes <= 10",
                },
                {
                    "id": "secret",
                    "effect": "forbid",
                    "principal": "*",
                    "action": "*",
                    "resource": "*",
                    "when": 'context.classification == "secret"',
                },
                {
                    "id": "elsewhere",
                    "effect": "permit",
                    "principal": ["emp"],
                    "action": "*",
                    "resource": "*",
                },
            ]
        }
    )
    request = Request(
        request_id="r",
        principal="drac",
        action="artifact.persist",
        resource="artifacts/a",
        context={"size_bytes": 5},
    )
    applied = explain(doc, request)
    assert [a.to_dict() for a in applied] == [
        {
            "id": "secret",
            "effect": "forbid",
            "condition": "error",
            "matched": False,
            "error": applied[0].error,
        },
        {"id": "small", "effect": "permit", "condition": "true", "matched": True},
    ]
    assert "classification" in applied[0].error
