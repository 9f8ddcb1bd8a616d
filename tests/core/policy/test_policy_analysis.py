"""Z3 analyses: always_denies, implies, equivalent, the governance checks and the CLI report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import z3

from sop_verified.core.policy.analysis import (
    AnalysisResult,
    always_denies,
    equivalent,
    find_request,
    implies,
    new_solver,
)
from sop_verified.core.policy.evaluator import PolicySet
from sop_verified.core.policy.governance import (
    Finding,
    Severity,
    governance_check,
    verify_governance,
)
from sop_verified.core.policy.loader import document_from_dict
from sop_verified.core.policy.report import check_directory, check_policy_set
from sop_verified.core.policy.request_vars import RequestVars
from sop_verified.core.request import ADMIN_ACTIONS, PERSIST_ACTIONS, parse_request
from sop_verified.errors import ConfigError, PolicyValidationError
from sop_verified.tools.paths import Glob

VECTORS = Path(__file__).parent / "vectors"
SCOPES = ["artifacts/**"]


def _set(*policies: dict[str, Any], roles: dict[str, list[str]] | None = None) -> PolicySet:
    return PolicySet(document_from_dict({"policy": list(policies), "roles": roles or {}}))


def _permit(pid: str = "p", **fields: Any) -> dict[str, Any]:
    base = {"id": pid, "effect": "permit", "principal": "*", "action": "*", "resource": "*"}
    return base | fields


def _forbid(pid: str = "f", **fields: Any) -> dict[str, Any]:
    return _permit(pid, effect="forbid") | fields


def _cex(found: AnalysisResult | Finding) -> dict[str, Any]:
    assert found.counterexample is not None
    return found.counterexample


SOUND = _set(
    _permit(
        "drac-persist",
        principal=["drac"],
        action=["artifact.persist"],
        resource=["artifacts/drac/**"],
        channel="bridge",
        when="has context.size_bytes && context.size_bytes <= 4096",
    ),
    _permit("read-any", action=["artifact.read"], channel="bridge"),
    _permit("ops-admin", principal=["ops"], action=["policy.activate"], channel="admin"),
)


def test_empty_set_always_denies() -> None:
    result = always_denies(_set())
    assert result.holds is True
    assert result.counterexample is None


def test_forbid_everything_always_denies() -> None:
    assert always_denies(_set(_permit("p"), _forbid("f"))).holds is True


def test_permissive_set_does_not_always_deny_and_shows_a_request() -> None:
    result = always_denies(SOUND)
    assert result.holds is False
    assert result.confirmed is True
    assert SOUND.evaluate(parse_request(_cex(result))).allowed


def test_unsatisfiable_condition_always_denies() -> None:
    s = _set(_permit("p", when="context.hour > 5 && context.hour < 3"))
    assert always_denies(s).holds is True


def test_narrower_set_implies_wider_one() -> None:
    narrow = _set(_permit("p", principal=["drac"], resource=["artifacts/drac/**"]))
    wide = _set(_permit("p", resource=["artifacts/**"]))
    assert implies(narrow, wide).holds is True
    back = implies(wide, narrow)
    assert back.holds is False
    assert back.confirmed is True
    cex = parse_request(_cex(back))
    assert wide.evaluate(cex).allowed
    assert not narrow.evaluate(cex).allowed


def test_equivalent_sets_written_differently() -> None:
    a = _set(
        _permit("p", when="context.hour >= 9 && context.hour < 17"), _forbid("f", principal=["emp"])
    )
    b = _set(
        _permit(
            "q", principal=["drac", "csp", "ops"], when="!(context.hour < 9 || context.hour > 16)"
        ),
        _permit("r", when="!(context.hour < 9) && 17 > context.hour"),
        _forbid("g", principal=["emp"], channel="bridge"),
        _forbid("h", principal=["emp"], channel="admin"),
    )
    assert equivalent(a, b).holds is True


def test_guard_order_matters_under_error_semantics() -> None:
    guarded = _set(_permit("p1"), _permit("p2", when="has context.hour && context.hour > 3"))
    unguarded = _set(_permit("p1"), _permit("p2", when="context.hour > 3 && has context.hour"))
    result = equivalent(guarded, unguarded)
    assert result.holds is False
    assert "hour" not in _cex(result)["context"]
    cex = parse_request(_cex(result))
    assert guarded.evaluate(cex).allowed
    assert unguarded.evaluate(cex).reason == "evaluation_error"


def test_persist_outside_scopes_is_found_with_a_counterexample() -> None:
    s = _set(
        _permit(
            "drac-persist",
            principal=["drac"],
            action=["artifact.persist"],
            resource=["artifacts/**", "tmp/**"],
        )
    )
    findings = governance_check(s, SCOPES)
    assert [f.code for f in findings] == ["persist_outside_scope"]
    f = findings[0]
    assert f.severity is Severity.ERROR
    assert f.policy_ids == ("drac-persist",)
    assert f.confirmed is True
    cex = parse_request(_cex(f))
    assert cex.action in PERSIST_ACTIONS
    assert cex.resource.startswith("tmp/")
    assert not Glob(SCOPES[0]).matches(cex.resource)
    assert s.evaluate(cex).allowed


def test_every_offending_permit_is_listed() -> None:
    s = _set(
        _permit("a", action=["state.persist"], resource=["x/**"]),
        _permit("b", action=["snapshot.seal"], resource=["y/*"]),
        _permit("c", action=["artifact.persist"], resource=["artifacts/ok/**"]),
    )
    findings = governance_check(s, SCOPES)
    assert sorted(i for f in findings for i in f.policy_ids) == ["a", "b"]
    assert all(f.confirmed for f in findings)


def test_forbid_can_make_a_broad_permit_sound() -> None:
    s = _set(
        _permit("any-persist", action=sorted(PERSIST_ACTIONS), channel="bridge"),
        _forbid(
            "outside",
            action=sorted(PERSIST_ACTIONS),
            resource=["**"],
            when='!(resource == "artifacts/x")',
        ),
    )
    assert governance_check(s, ["artifacts/x"]) == []


def test_admin_action_through_the_bridge_is_found() -> None:
    s = _set(_permit("too-broad", principal=["ops"], action=["policy.activate"]))
    findings = governance_check(s, SCOPES)
    assert [f.code for f in findings] == ["admin_via_bridge"]
    cex = parse_request(_cex(findings[0]))
    assert cex.channel == "bridge"
    assert cex.action in ADMIN_ACTIONS
    assert s.evaluate(cex).allowed
    assert findings[0].policy_ids == ("too-broad",)


def test_admin_via_bridge_behind_a_condition_is_found() -> None:
    s = _set(
        _permit(
            "sneaky",
            action="*",
            resource=["admin/**"],
            channel="bridge",
            when='has context.emergency && context.emergency && context.tenant == "root"',
        )
    )
    findings = governance_check(s, ["artifacts/**", "admin/**"])
    assert [f.code for f in findings] == ["admin_via_bridge"]
    cex = _cex(findings[0])
    assert cex["context"]["emergency"] is True
    assert cex["context"]["tenant"] == "root"


def test_sound_set_passes_governance() -> None:
    assert governance_check(SOUND, SCOPES) == []
    verify_governance(SOUND, SCOPES)


def test_activation_gate_refuses_with_the_counterexample() -> None:
    s = _set(_permit("too-broad"))
    with pytest.raises(PolicyValidationError, match="fails governance") as info:
        verify_governance(s, SCOPES)
    assert "counterexample {" in str(info.value)


def test_malformed_approved_scope_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="approved_scopes"):
        governance_check(SOUND, ["artifacts/../x"])


def test_check_directory_reports_a_sound_set_ok(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text(json.dumps(SOUND.document.to_canonical()))
    report = check_directory(tmp_path, SCOPES)
    assert report.ok
    assert report.digest == SOUND.digest
    assert report.policy_count == 3
    assert [a.name for a in report.analyses] == ["always_denies"]
    assert json.loads(json.dumps(report.to_dict()))["ok"] is True


def test_check_directory_refuses_an_unsound_set(tmp_path: Path) -> None:
    shutil.copy(VECTORS / "good" / "drac-example.toml", tmp_path)
    report = check_directory(tmp_path, ["artifacts/emp/**"])
    assert not report.ok
    assert {f.code for f in report.errors} == {"persist_outside_scope"}
    assert report.to_dict()["findings"][0]["counterexample"]["action"] == "artifact.persist"


def test_check_directory_reports_an_invalid_set(tmp_path: Path) -> None:
    shutil.copy(VECTORS / "bad" / "unknown-action.toml", tmp_path)
    report = check_directory(tmp_path, SCOPES)
    assert not report.ok
    assert report.findings[0].code == "invalid_policy_set"
    assert "unknown action `artifact.delete`" in report.findings[0].message
    assert report.digest is None


def test_report_warns_on_a_set_that_denies_everything() -> None:
    report = check_policy_set(_set(), SCOPES)
    assert report.ok
    assert [f.code for f in report.findings] == ["always_denies"]
    assert report.findings[0].severity is Severity.WARNING


def test_report_compares_with_the_active_set() -> None:
    wider = _set(
        *[p.to_canonical() for p in SOUND.document.policies],
        _permit("extra", action=["artifact.read"], channel="admin"),
    )
    report = check_policy_set(wider, SCOPES, active=SOUND)
    codes = {f.code for f in report.findings}
    assert codes == {"widens_active"}
    assert report.ok
    same = check_policy_set(SOUND, SCOPES, active=SOUND)
    assert {f.code for f in same.findings} == {"equivalent_to_active"}


@pytest.mark.parametrize(
    "when",
    [
        "context.labels != []",
        'context.labels != ["a"]',
        '!(context.labels == ["a", "b"]) && "a" in context.labels',
    ],
)
def test_set_counterexamples_keep_unseen_members(when: str) -> None:
    s = _set(_permit("p", when=when))
    result = always_denies(s)
    assert result.holds is False
    assert result.confirmed is True
    assert s.evaluate(parse_request(_cex(result))).allowed


def test_lazy_well_formedness_refines_a_model_that_is_not_a_request() -> None:
    v = RequestVars()
    solver = new_solver()
    solver.add(z3.Or(v.resource == z3.StringVal("a/.."), v.resource == z3.StringVal("a/b")))
    verdict, cex = find_request(solver, v, frozenset())
    assert verdict == z3.sat
    assert cex is not None
    assert cex["resource"] == "a/b"
    solver = new_solver()
    solver.add(v.resource == z3.StringVal("a/.."))
    assert find_request(solver, v, frozenset()) == (z3.unsat, None)
