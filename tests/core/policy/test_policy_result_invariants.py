"""INV-1 in plain code on every policy result, and the policy set's invariant on construction.

The hot path carries no per-call contract in the shipped settings (ADR 0007,
revisited in issue 12): these tests hold the checks that replaced them.
"""

from __future__ import annotations

import subprocess
import sys

import icontract
import pytest

from sop_verified.core.policy import evaluator
from sop_verified.core.policy.evaluator import PolicyReason, PolicyResult, PolicySet
from sop_verified.core.policy.loader import document_from_dict
from sop_verified.core.request import Permission, parse_request
from sop_verified.errors import PolicyEvaluationError

_PERMIT = {"id": "p", "effect": "permit", "principal": "*", "action": "*", "resource": "*"}
_REQUEST = {
    "request_id": "r1",
    "principal": "drac",
    "action": "artifact.persist",
    "resource": "artifacts/drac/a.bin",
    "channel": "bridge",
    "context": {},
}


@pytest.mark.parametrize(
    ("reason", "ids"),
    [
        (PolicyReason.PERMITTED, ()),
        (PolicyReason.NO_PERMIT, ("p",)),
        (PolicyReason.FORBIDDEN, ("f",)),
        (PolicyReason.EVALUATION_ERROR, ("e",)),
    ],
)
def test_an_allow_without_its_matching_permits_cannot_be_built(
    reason: PolicyReason, ids: tuple[str, ...]
) -> None:
    with pytest.raises(PolicyEvaluationError, match="an ALLOW must name its matching permits"):
        PolicyResult(Permission.ALLOW, reason, ids)


def test_every_deny_and_a_permitted_allow_can_be_built() -> None:
    assert PolicyResult(Permission.ALLOW, PolicyReason.PERMITTED, ("p",)).allowed
    for reason in PolicyReason:
        assert not PolicyResult(Permission.DENY, reason).allowed


def test_a_broken_allow_on_the_decision_path_is_an_evaluation_error_deny(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = PolicySet(document_from_dict({"policy": [_PERMIT], "roles": {}}))
    real = evaluator.PolicyResult

    def _no_ids(
        effect: Permission, reason: PolicyReason, ids: tuple[str, ...] = (), message: str = ""
    ) -> PolicyResult:  # a bug that forgets the permits of an ALLOW
        return real(effect, reason, () if effect is Permission.ALLOW else ids, message)

    monkeypatch.setattr(evaluator, "PolicyResult", _no_ids)
    result = s.evaluate(parse_request(_REQUEST))
    assert result.effect is Permission.DENY
    assert result.reason is PolicyReason.EVALUATION_ERROR


def test_the_policy_set_invariant_is_checked_on_assignment() -> None:
    s = PolicySet(document_from_dict({"policy": [_PERMIT], "roles": {}}))
    with pytest.raises(icontract.ViolationError, match="compiled from a digested document"):
        s._digest = "md5:0"  # the invariant guards it


def test_inv1_holds_in_plain_code_under_python_O_with_shipped_contracts() -> None:
    code = (
        "from sop_verified.core.policy.evaluator import PolicyReason, PolicyResult\n"
        "from sop_verified.core.request import Permission\n"
        "from sop_verified.errors import PolicyEvaluationError\n"
        "assert not __debug__\n"
        "try:\n"
        "    PolicyResult(Permission.ALLOW, PolicyReason.PERMITTED, ())\n"
        "except PolicyEvaluationError:\n"
        "    print('denied')\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "SOP_CONTRACTS"}
    done = subprocess.run(
        [sys.executable, "-O", "-c", code], capture_output=True, text=True, check=False, env=env
    )
    assert done.stdout.strip() == "denied", done.stderr
