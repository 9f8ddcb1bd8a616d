"""Differential tests: the fast evaluator, the Z3 encoding and the analyses agree.

Hypothesis generates policy sets (principals, roles, actions, globs, channels,
typed conditions over the context schema, printed and re-parsed) and requests;
the evaluator's effect must equal the encoding's, and in the fast variant the
determining policy ids must equal the ones the encoding says match or err.
The analyses are held to the evaluator too: every counterexample replays, and
what an analysis proves holds on every generated request.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from policy_strategies import policy_documents, requests

from sop_verified.core.policy.analysis import always_denies, implies
from sop_verified.core.policy.encode import PolicyEncoding
from sop_verified.core.policy.evaluator import PolicyReason, PolicySet
from sop_verified.core.policy.model import PolicyDocument
from sop_verified.core.request import Request

_CASES = st.tuples(policy_documents(), st.lists(requests(), min_size=1, max_size=6))
_SETTINGS = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}


def _expected_ids(explained: dict[str, frozenset[str]], reason: PolicyReason) -> frozenset[str]:
    if explained["errors"]:
        return explained["errors"]
    if explained["forbids"]:
        return explained["forbids"]
    return explained["permits"] if reason is PolicyReason.PERMITTED else frozenset()


def _agree(doc: PolicyDocument, reqs: list[Request], *, ids: bool) -> None:
    fast, enc = PolicySet(doc), PolicyEncoding(doc)
    for r in reqs:
        result = fast.evaluate(r)
        assert enc.evaluate(r) is result.effect, (doc.to_canonical(), r.to_dict(), result)
        if ids:
            explained = enc.explain(r)
            assert frozenset(result.policy_ids) == _expected_ids(explained, result.reason), (
                doc.to_canonical(),
                r.to_dict(),
                result,
                explained,
            )


@settings(max_examples=200, **_SETTINGS)  # type: ignore[arg-type]  # settings kwargs from a dict
@given(_CASES)
def test_evaluator_and_z3_encoding_agree(case: tuple[PolicyDocument, list[Request]]) -> None:
    doc, reqs = case
    _agree(doc, reqs, ids=True)


@pytest.mark.slow
@settings(max_examples=10_000, **_SETTINGS)  # type: ignore[arg-type]  # settings kwargs from a dict
@given(_CASES)
def test_evaluator_and_z3_encoding_agree_10k(case: tuple[PolicyDocument, list[Request]]) -> None:
    doc, reqs = case
    _agree(doc, reqs, ids=False)


def _analyses_agree(a: PolicyDocument, b: PolicyDocument, reqs: list[Request]) -> None:
    sa, sb = PolicySet(a), PolicySet(b)
    denies = always_denies(sa)
    assert denies.holds is not None
    if denies.holds:
        assert not any(sa.evaluate(r).allowed for r in reqs)
    else:
        assert denies.confirmed, (a.to_canonical(), denies.counterexample)
    covered = implies(sa, sb)
    assert covered.holds is not None
    if covered.holds:
        assert all(sb.evaluate(r).allowed for r in reqs if sa.evaluate(r).allowed)
    else:
        assert covered.confirmed, (a.to_canonical(), b.to_canonical(), covered.counterexample)


_PAIRS = st.tuples(
    policy_documents(max_policies=3),
    policy_documents(max_policies=3),
    st.lists(requests(), min_size=1, max_size=6),
)


@settings(max_examples=100, **_SETTINGS)  # type: ignore[arg-type]  # settings kwargs from a dict
@given(_PAIRS)
def test_analysis_counterexamples_replay_and_proofs_hold(
    case: tuple[PolicyDocument, PolicyDocument, list[Request]],
) -> None:
    _analyses_agree(*case)


@pytest.mark.slow
@settings(max_examples=1000, **_SETTINGS)  # type: ignore[arg-type]  # settings kwargs from a dict
@given(_PAIRS)
def test_analysis_counterexamples_replay_and_proofs_hold_1000(
    case: tuple[PolicyDocument, PolicyDocument, list[Request]],
) -> None:
    _analyses_agree(*case)
