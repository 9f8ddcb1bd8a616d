"""The fast evaluator: forbid overrides permit, default deny, any error denies, roles, scopes."""

from __future__ import annotations

import statistics
import timeit
from pathlib import Path
from typing import Any

import pytest

from sop_verified.core.policy.evaluator import PolicyReason, PolicyResult, PolicySet
from sop_verified.core.policy.loader import document_from_dict
from sop_verified.core.policy.model import PolicyDocument
from sop_verified.core.request import Permission, Request, Stage, parse_request

VECTORS = Path(__file__).parent / "vectors"


def _set(*policies: dict[str, Any], roles: dict[str, list[str]] | None = None) -> PolicySet:
    return PolicySet(document_from_dict({"policy": list(policies), "roles": roles or {}}))


def _permit(pid: str = "p", **fields: Any) -> dict[str, Any]:
    base = {"id": pid, "effect": "permit", "principal": "*", "action": "*", "resource": "*"}
    return base | fields


def _forbid(pid: str = "f", **fields: Any) -> dict[str, Any]:
    return _permit(pid, effect="forbid") | fields


def _req(**fields: Any) -> Request:
    base = {
        "request_id": "r1",
        "principal": "drac",
        "action": "artifact.persist",
        "resource": "artifacts/drac/a.bin",
        "channel": "bridge",
        "context": {},
    }
    return parse_request(base | fields)


def test_matching_permit_allows_with_its_id() -> None:
    result = _set(_permit("p1")).evaluate(_req())
    assert result == PolicyResult(Permission.ALLOW, PolicyReason.PERMITTED, ("p1",))
    assert result.allowed


def test_forbid_trumps_permit() -> None:
    s = _set(_permit("p1"), _permit("p2"), _forbid("f1"))
    result = s.evaluate(_req())
    assert result.effect is Permission.DENY
    assert result.reason is PolicyReason.FORBIDDEN
    assert result.policy_ids == ("f1",)


def test_forbid_trumps_permit_whatever_the_order() -> None:
    a = _set(_forbid("a-forbid"), _permit("z-permit"))
    b = _set(_forbid("z-forbid"), _permit("a-permit"))
    assert a.evaluate(_req()).effect is Permission.DENY
    assert b.evaluate(_req()).effect is Permission.DENY


def test_default_deny() -> None:
    s = _set(_permit("p1", principal=["emp"]), _forbid("f1", principal=["csp"]))
    result = s.evaluate(_req())
    assert result == PolicyResult(Permission.DENY, PolicyReason.NO_PERMIT)
    assert "default deny" in result.describe()


def test_empty_set_denies() -> None:
    s = PolicySet(PolicyDocument([]))
    for action in ("artifact.persist", "policy.activate"):
        assert s.evaluate(_req(action=action)).reason is PolicyReason.NO_PERMIT


def test_forbid_alone_denies() -> None:
    assert _set(_forbid("f1", resource=["nothing/**"])).evaluate(_req()).effect is Permission.DENY


def test_evaluation_error_denies() -> None:
    s = _set(_permit("p1"), _permit("p2", when="context.size_bytes <= 4096"))
    result = s.evaluate(_req())  # no size_bytes: p2 errs, so p1's permit does not count
    assert result.effect is Permission.DENY
    assert result.reason is PolicyReason.EVALUATION_ERROR
    assert result.policy_ids == ("p2",)
    assert "`size_bytes` is absent" in result.message


def test_evaluation_error_in_forbid_denies() -> None:
    s = _set(_permit("p1"), _forbid("f1", when="context.hour > 22"))
    assert s.evaluate(_req()).reason is PolicyReason.EVALUATION_ERROR
    assert s.evaluate(_req(context={"hour": 3})).reason is PolicyReason.PERMITTED


def test_error_in_a_policy_that_does_not_apply_is_not_evaluated() -> None:
    s = _set(_permit("p1"), _permit("p2", principal=["emp"], when="context.hour > 1"))
    assert s.evaluate(_req()).reason is PolicyReason.PERMITTED


def test_has_guard_makes_absent_attribute_safe() -> None:
    s = _set(_permit("p1", when="has context.size_bytes && context.size_bytes <= 4096"))
    assert s.evaluate(_req()).reason is PolicyReason.NO_PERMIT
    assert s.evaluate(_req(context={"size_bytes": 10})).reason is PolicyReason.PERMITTED
    assert s.evaluate(_req(context={"size_bytes": 5000})).reason is PolicyReason.NO_PERMIT


def test_or_short_circuits_left_to_right() -> None:
    s = _set(_permit("p1", when="!(has context.hour) || context.hour < 9"))
    assert s.evaluate(_req()).allowed
    s = _set(_permit("p1", when="context.hour < 9 || !(has context.hour)"))
    assert s.evaluate(_req()).reason is PolicyReason.EVALUATION_ERROR


def test_roles_expand_to_their_members() -> None:
    s = _set(_permit("p1", principal=["role:compiler"]), roles={"compiler": ["drac", "emp"]})
    assert s.evaluate(_req(principal="emp")).allowed
    assert s.evaluate(_req(principal="drac")).allowed
    assert not s.evaluate(_req(principal="csp")).allowed


def test_channel_is_part_of_the_scope() -> None:
    s = _set(_permit("p1", channel="admin"))
    assert not s.evaluate(_req(channel="bridge")).allowed
    assert s.evaluate(_req(channel="admin")).allowed


def test_action_is_part_of_the_scope() -> None:
    s = _set(_permit("p1", action=["artifact.read"]))
    assert not s.evaluate(_req()).allowed
    assert s.evaluate(_req(action="artifact.read")).allowed


@pytest.mark.parametrize(
    ("glob", "resource", "allowed"),
    [
        ("artifacts/drac/**", "artifacts/drac/a.bin", True),
        ("artifacts/drac/**", "artifacts/drac", False),
        ("artifacts/drac/**", "artifacts/dracx/a.bin", False),
        ("artifacts/*/a.bin", "artifacts/drac/a.bin", True),
        ("artifacts/*.bin", "artifacts/drac/a.bin", False),
        ("**/a.bin", "artifacts/drac/a.bin", True),
        ("artifacts/drac/?.bin", "artifacts/drac/a.bin", True),
        ("artifacts/drac/a.bin", "artifacts/drac/a.bin", True),
        ("artifacts/drac/a.bin", "artifacts/drac/a.bin2", False),
        ("art*/**", "artifacts/drac/a.bin", True),
    ],
)
def test_resource_globs_match_like_tools_paths(glob: str, resource: str, allowed: bool) -> None:
    s = _set(_permit("p1", resource=[glob]))
    assert s.evaluate(_req(resource=resource)).allowed is allowed


def test_several_globs_any_matches() -> None:
    s = _set(_permit("p1", resource=["x/**", "artifacts/drac/*.bin"]))
    assert s.evaluate(_req()).allowed
    assert not s.evaluate(_req(resource="artifacts/emp/a.bin")).allowed


def test_all_matching_permits_are_reported_in_id_order() -> None:
    s = _set(_permit("b"), _permit("a"), _permit("c", principal=["emp"]))
    assert s.evaluate(_req()).policy_ids == ("a", "b")


def test_set_conditions_and_contains() -> None:
    s = _set(_permit("p1", when='context.labels.contains("ok") && principal in ["drac"]'))
    assert s.evaluate(_req(context={"labels": ["ok", "x"]})).allowed
    assert not s.evaluate(_req(context={"labels": ["x"]})).allowed
    s = _set(_permit("p1", when='context.labels == ["a", "b"]'))
    assert s.evaluate(_req(context={"labels": ["b", "a"]})).allowed
    assert not s.evaluate(_req(context={"labels": ["a"]})).allowed


def test_attribute_comparisons() -> None:
    s = _set(_permit("p1", when='context.tenant == principal && channel != "admin"'))
    assert s.evaluate(_req(context={"tenant": "drac"})).allowed
    assert not s.evaluate(_req(context={"tenant": "emp"})).allowed


def test_not_a_request_is_denied() -> None:
    result = _set(_permit("p1")).evaluate({"principal": "drac"})  # type: ignore[arg-type]  # misuse on purpose
    assert result.effect is Permission.DENY
    assert result.reason is PolicyReason.EVALUATION_ERROR


def test_unexpected_exception_is_denied() -> None:
    s = _set(_permit("p1", when="context.hour < 3"))
    broken = Request.model_construct(
        request_id="r",
        principal="drac",
        action="artifact.persist",
        resource="artifacts/a",
        channel="bridge",
        context={"hour": "not an int"},
        capability="",
        obligations=(),
    )
    result = s.evaluate(broken)
    assert result.effect is Permission.DENY
    assert result.reason is PolicyReason.EVALUATION_ERROR
    assert "TypeError" in result.message


def test_result_as_reason_and_dict() -> None:
    result = _set(_forbid("f1")).evaluate(_req())
    reason = result.to_reason()
    assert reason.stage is Stage.POLICY
    assert reason.code == "forbidden"
    assert reason.policy_ids == ("f1",)
    assert result.to_dict() == {
        "effect": "DENY",
        "reason": "forbidden",
        "policy_ids": ["f1"],
        "message": "forbidden by `f1`",
    }


def test_set_loads_from_path_and_canonical_bytes() -> None:
    s = PolicySet.from_path(VECTORS / "good")
    again = PolicySet.from_canonical(s.document.canonical_bytes())
    assert again.digest == s.digest
    r = _req(context={"size_bytes": 100, "phase": "FREEZE"})
    assert s.evaluate(r) == again.evaluate(r)
    assert s.evaluate(r).policy_ids == ("drac-persist-artifacts",)


def test_evaluate_carries_the_inv1_postcondition() -> None:
    assert PolicySet.evaluate.__postconditions__  # type: ignore[attr-defined]  # set by icontract


@pytest.mark.slow
def test_decision_median_under_budget_on_a_forty_policy_set() -> None:
    policies: list[dict[str, Any]] = []
    for i in range(40):
        policies.append(
            _permit(
                f"p{i:02}",
                principal=["drac" if i % 2 else "emp"],
                action=["artifact.persist"],
                resource=[f"artifacts/t{i}/**", f"shared/t{i}/*.bin"],
                channel="bridge",
                when='context.size_bytes <= 4096 && context.phase in ["ASSEMBLE", "FREEZE"]',
            )
        )
    s = _set(*policies, _forbid("f", resource=["quarantine/**"]))
    r = _req(resource="artifacts/t1/x/y.bin", context={"size_bytes": 1, "phase": "FREEZE"})
    assert s.evaluate(r).policy_ids == ("p01",)
    runs = [timeit.timeit(lambda: s.evaluate(r), number=2000) / 2000 for _ in range(15)]
    assert statistics.median(runs) < 50e-6  # measured ~7 us with contracts; loose for noisy CI
