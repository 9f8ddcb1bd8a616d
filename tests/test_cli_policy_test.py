"""`sop policy test`: TOML cases run against a policy set's policy stage, no data directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sop_verified.cli import app
from sop_verified.nexus.demo_policies import SOUND_POLICIES, SOUND_POLICY_TESTS

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"
runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["policy", "test", *args])
    return result.exit_code, result.output


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_the_shipped_examples_are_the_demos_and_pass() -> None:
    demo = EXAMPLES / "demo-policies"
    assert (demo / "policies.toml").read_text() == SOUND_POLICIES
    assert (demo / "tests" / "demo.toml").read_text() == SOUND_POLICY_TESTS
    for tests, count in ((demo / "tests", 12), (EXAMPLES / "policies" / "tests", 5)):
        code, out = _run(str(tests), "--json")
        assert code == 0, out
        report = json.loads(out)
        assert report["ok"] and report["passed"] == count and report["failed"] == 0
        assert report["policies"] == str(tests.parent)  # the directory above the tests


def test_every_kind_of_answer_is_tested_by_the_demo_examples() -> None:
    _, out = _run(str(EXAMPLES / "demo-policies" / "tests"), "--json")
    reasons = {c["actual"]["reason"] for c in json.loads(out)["cases"]}
    assert reasons == {"permitted", "forbidden", "no_permit", "evaluation_error"}


def _cases(tmp_path: Path, text: str) -> Path:
    tests = tmp_path / "tests"
    tests.mkdir(exist_ok=True)
    (tests / "t.toml").write_text(text)
    return tests


FAILING = """\
[defaults]
principal = "drac"
action = "artifact.persist"

[[case]]
name = "passes"
resource = "artifacts/drac/a.json"
context = { size_bytes = 1 }
expect = "ALLOW"

[[case]]
name = "expects the wrong answer"
resource = "artifacts/drac/big.bin"
context = { size_bytes = 1 }
expect = { effect = "DENY", policies = ["nothing"], reason = "no_permit" }
"""


def test_a_failure_shows_request_expected_actual_and_what_applied(tmp_path: Path) -> None:
    tests = _cases(tmp_path, FAILING)
    policies = str(EXAMPLES / "policies")
    code, text = _run(str(tests), "--policies", policies)
    assert code == 1, text
    flat = _flat(text)
    assert (
        "FAIL expects the wrong answer (case 2, line 11: effect, policies, reason differ)" in flat
    )
    assert '"resource": "artifacts/drac/big.bin"' in flat
    assert "expected DENY, reason no_permit, policies nothing" in flat
    assert "actual ALLOW, reason permitted, policies drac-persists-its-artifacts" in flat
    assert "applied drac-persists-its-artifacts (permit, condition true: matched)" in flat
    assert "2 cases: 1 passed, 1 failed" in flat
    code, out = _run(str(tests), "--policies", policies, "--json")
    assert code == 1
    report = json.loads(out)
    assert (report["ok"], report["passed"], report["failed"]) == (False, 1, 1)
    failed = report["cases"][1]
    assert failed["mismatches"] == ["effect", "policies", "reason"]
    assert failed["expected"] == {"effect": "DENY", "policies": ["nothing"], "reason": "no_permit"}
    assert failed["actual"]["policy_ids"] == ["drac-persists-its-artifacts"]
    assert failed["applied"][0]["id"] == "drac-persists-its-artifacts"
    assert "capability" not in failed["request"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[[case]]\nname = \n", "malformed TOML"),
        ("[[case]]\nname = 'x'\n", "line 1 (x)"),  # no `expect`
        ('[[case]]\nexpect = "MAYBE"\nprincipal = "drac"\n', "expected effect `MAYBE`"),
        ('[[case]]\nexpect = "DENY"\nexpct = 1\n', "unknown key `expct`"),
        ('[[case]]\nexpect = "DENY"\ncapability = "t"\n', "capabilities are not part of a policy"),
        ('[defaults]\nobligations = []\n[[case]]\nexpect = "DENY"\n', "obligations are not part"),
        ('[[case]]\nexpect = { effect = "DENY", reason = "nope" }\n', "unknown reason `nope`"),
        ('[[case]]\nexpect = "DENY"\nprincipal = "drac"\n', "the case's request is malformed"),
        ("[defaults]\nprincipal = 'drac'\n", "holds no `[[case]]`"),
        ("title = 'x'\n", "unknown top-level key `title`"),
    ],
)
def test_a_malformed_test_file_exits_2_naming_file_and_case(
    tmp_path: Path, text: str, says: str
) -> None:
    tests = _cases(tmp_path, text)
    code, out = _run(str(tests), "--policies", str(EXAMPLES / "policies"))
    assert code == 2, out
    assert str(tests / "t.toml") in out.replace("\n", "") and says in _flat(out)


def test_missing_tests_or_policies_exit_2_naming_them(tmp_path: Path) -> None:
    code, out = _run(str(tmp_path / "none"))
    assert code == 2 and "no such test file or directory" in _flat(out)
    assert str(tmp_path / "none") in out.replace("\n", "")
    tests = _cases(tmp_path, FAILING)
    code, out = _run(str(tests), "--policies", str(tmp_path / "nope"))
    assert code == 2 and "no such policy file or directory" in _flat(out)
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out = _run(str(empty))
    assert code == 2 and "holds no test file" in _flat(out)
