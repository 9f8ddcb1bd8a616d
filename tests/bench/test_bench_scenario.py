"""The policy benchmark's scenario: SOP, cedarpy and casbin decide it alike.

The bench asserts agreement on every request when it runs; these tests keep
that claim checked in CI on a sample, show that the check catches a
non-equivalent rendering, and that the corpus exercises allows, default
denies and every forbid.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import bench_policy
import cedarpy
import contract_switch
import pytest
from policy_agreement import DisagreementError, check_agreement, verdict_digest
from policy_corpus import Case, generate_cases
from policy_engines import CasbinEngine, CedarEngine, SopEngine, Verdict
from policy_render import object_match
from policy_scenario import RULES, Cmp, Rule, glob_prefix

from sop_verified.tools.paths import Glob

BENCH = Path(bench_policy.__file__).resolve().parent
CORPUS = 2000


@cache
def _corpus() -> tuple[Case, ...]:
    return tuple(generate_cases(CORPUS))


@cache
def _sop_verdicts() -> tuple[Verdict, ...]:
    sop = SopEngine(RULES)
    return tuple(sop.verdict(r) for r in sop.prepare(list(_corpus())))


def _verdicts(engine: Any, cases: list[Case]) -> list[Verdict]:
    return [engine.verdict(item) for item in engine.prepare(cases)]


def _without(rule_id: str) -> tuple[Rule, ...]:
    assert any(r.id == rule_id for r in RULES)
    return tuple(r for r in RULES if r.id != rule_id)


def test_scenario_has_30_to_50_policies_with_unique_ids() -> None:
    ids = [r.id for r in RULES]
    assert 30 <= len(ids) <= 50
    assert len(set(ids)) == len(ids)
    assert {r.effect for r in RULES} == {"permit", "forbid"}


def test_three_engines_agree_on_a_sample_of_the_corpus() -> None:
    sample = list(_corpus()[::13])  # 154 requests spread over the corpus
    reference = [_sop_verdicts()[i] for i in range(0, CORPUS, 13)]
    agreement = check_agreement(
        sample,
        reference,
        {
            "cedarpy": _verdicts(CedarEngine(RULES), sample),
            "casbin": _verdicts(CasbinEngine(RULES), sample),
        },
    )
    assert agreement.compared == {"cedarpy": len(sample), "casbin": len(sample)}
    assert agreement.ids_compared == {"cedarpy": True, "casbin": False}
    assert {"permitted", "forbidden", "no_permit"} <= set(agreement.reasons)


def test_sop_and_cedar_agree_on_every_request_and_determining_policy() -> None:
    cases = list(_corpus())
    agreement = check_agreement(
        cases, _sop_verdicts(), {"cedarpy": _verdicts(CedarEngine(RULES), cases)}
    )
    assert agreement.compared == {"cedarpy": CORPUS}


def test_corpus_covers_allow_default_deny_and_every_forbid() -> None:
    verdicts = _sop_verdicts()
    reasons = Counter(v.reason for v in verdicts)
    assert "evaluation_error" not in reasons  # every request carries every context attribute
    for reason in ("permitted", "forbidden", "no_permit"):
        assert reasons[reason] >= CORPUS // 10, reasons
    fired = {pid for v in verdicts if v.reason == "forbidden" for pid in v.policy_ids or ()}
    assert fired == {r.id for r in RULES if r.effect == "forbid"}


def test_corpus_is_deterministic_for_a_seed() -> None:
    assert generate_cases(300, seed=7) == generate_cases(300, seed=7)
    assert generate_cases(300, seed=7) != generate_cases(300, seed=8)


def test_cedar_rendering_missing_a_forbid_is_caught() -> None:
    cases = list(_corpus()[:300])
    broken = _verdicts(CedarEngine(_without("bridge-no-admin")), cases)
    with pytest.raises(DisagreementError, match="cedarpy differs"):
        check_agreement(cases, _sop_verdicts()[:300], {"cedarpy": broken})


def test_casbin_rendering_with_a_wrong_threshold_is_caught() -> None:
    # casbin's oversize forbid at 16 MiB instead of 8 MiB; a 9 MiB vault write that only
    # the forbid stops tells the two apart
    wrong = tuple(
        Rule(r.id, r.effect, r.principals, r.actions, r.resources, r.channel,
             Cmp("size_bytes", ">", 16 * 1024 * 1024), r.description)
        if r.id == "oversize-write" else r
        for r in RULES
    )  # fmt: skip
    case = Case(
        "mutant-1", "drac", "artifact.persist", "vault/a1", "bridge",
        {**_corpus()[0].context, "size_bytes": 9 * 1024 * 1024, "classification": "secret",
         "trust_level": 5, "emergency": False, "labels": []},
    )  # fmt: skip
    reference = _verdicts(SopEngine(RULES), [case])
    assert reference[0].policy_ids == frozenset({"oversize-write"})
    assert _verdicts(SopEngine(_without("oversize-write")), [case])[0].allowed
    with pytest.raises(DisagreementError, match="casbin differs"):
        check_agreement([case], reference, {"casbin": _verdicts(CasbinEngine(wrong), [case])})


def test_bench_fails_loudly_when_engines_disagree(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        bench_policy, "CedarEngine", lambda rules: CedarEngine(_without("revoked-principal"))
    )
    assert bench_policy.main(["--requests", "120"]) == 2
    assert "DISAGREEMENT" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("path", "inside"),
    [
        ("drac/artifacts", False),  # the scope root itself is not below it
        ("drac/artifacts/a", True),
        ("drac/artifacts/a/b.json", True),
        ("drac/artifactsx/a", False),
        ("drac/art", False),
    ],
)
def test_prefix_glob_means_the_same_in_the_three_engines(path: str, inside: bool) -> None:
    pattern = "drac/artifacts/**"
    prefix = glob_prefix(pattern)
    assert prefix == "drac/artifacts/"
    assert Glob(pattern).matches(path) is inside
    assert object_match(path, prefix + "*") is inside
    cedar = cedarpy.is_authorized(
        {
            "principal": {"type": "Principal", "id": "p"},
            "action": {"type": "Action", "id": "a"},
            "resource": {"type": "Resource", "id": path},
            "context": json.dumps({"path": path}),
        },
        f'permit (principal, action, resource) when {{ context.path like "{prefix}*" }};',
        [],
    )
    assert cedar.allowed is inside


@pytest.mark.parametrize("pattern", ["drac/*/x", "drac/**/x", "drac/a?"])
def test_glob_shapes_the_engines_read_differently_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="neither an exact path"):
        glob_prefix(pattern)


def _child(env_value: str, code: str | None = None, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", code] if code else [sys.executable, str(BENCH / "bench_policy.py")]
    return subprocess.run(
        [*cmd, *args],
        env={**os.environ, contract_switch.ENV: env_value, "PYTHONPATH": str(BENCH)},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_contracts_off_run_has_no_contracts_and_decides_the_same() -> None:
    done = _child("off", None, "--only", "sop", "--requests", "60", "--rounds", "1")
    assert done.returncode == 0, done.stderr
    child = json.loads(done.stdout)
    assert child["contracts_on"] is False
    assert child["contracted"] is False
    assert child["digest"] == verdict_digest(_sop_verdicts()[:60])
    assert contract_switch.contracted(type(SopEngine(RULES).policy_set).evaluate)


def test_switching_contracts_off_too_late_is_refused() -> None:
    done = _child("off", "import sop_verified.core.request; import contract_switch")
    assert done.returncode != 0
    # the first core module, by name, that importing `request` loaded (request imports it)
    assert "before `sop_verified.core.decision_fields` is imported" in done.stderr


@pytest.mark.slow
def test_bench_command_prints_the_table_end_to_end() -> None:
    done = _child(
        "on", None, "--requests", "300", "--rounds", "1", "--cedar-rounds", "1",
        "--casbin-requests", "20", "--casbin-rounds", "1", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [e["engine"].split(" ")[0] for e in report["engines"]] == [
        "SOP,", "SOP,", "cedarpy", "casbin",
    ]  # fmt: skip
    assert report["agreement"]["compared"] == {"cedarpy": 300, "casbin": 300}
    assert report["engines"][0]["ratio"] == 1.0
