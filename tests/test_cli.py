"""The `sop` command: demo, init, status, policy check/activate, capabilities; --json shapes."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from sop_verified.cli import app
from sop_verified.nexus.demo import SOUND_POLICIES, UNSOUND_POLICIES

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_demo_runs_and_denies_for_different_reasons(tmp_path: Path) -> None:
    code, output = _run("demo", "--data-dir", str(tmp_path / "d"), "--json")
    assert code == 0, output
    data = json.loads(output)
    effects = [r["effect"] for r in data["requests"]]
    assert len(effects) >= 12
    assert {"ALLOW", "DENY"} <= set(effects)
    denial_codes = {r["code"] for r in data["requests"] if r["effect"] == "DENY"}
    assert {
        "forbidden",
        "no_permit",
        "revoked",
        "expired",
        "forged",
        "wrong_principal",
        "admin_via_bridge",
        "bad_request",
        "obligation_unknown",
    } <= denial_codes
    assert data["refused_policy_set"]["counterexample"]["action"] == "artifact.persist"


def test_demo_human_output(tmp_path: Path) -> None:
    code, output = _run("demo", "--data-dir", str(tmp_path / "d"))
    assert code == 0, output
    assert "counterexample request" in output
    assert "decisions" in output


def test_demo_refuses_an_initialised_directory(tmp_path: Path) -> None:
    assert _run("init", "--data-dir", str(tmp_path / "d"))[0] == 0
    code, output = _run("demo", "--data-dir", str(tmp_path / "d"))
    assert code != 0
    assert "already initialised" in output


def test_status_reports_ready(tmp_path: Path) -> None:
    _run("init", "--data-dir", str(tmp_path / "d"))
    code, output = _run("status", "--data-dir", str(tmp_path / "d"), "--json")
    assert code == 0
    assert json.loads(output)["health"] == "READY"


def test_status_without_data_dir_says_what_to_do(tmp_path: Path) -> None:
    code, output = _run("status", "--data-dir", str(tmp_path / "missing"))
    assert code == 2
    assert "sop init" in output


def _policy_dir(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.mkdir()
    (path / "p.toml").write_text(text)
    return path


def test_policy_check_reports_counterexample_and_exit_1(tmp_path: Path) -> None:
    code, output = _run(
        "policy",
        "check",
        str(_policy_dir(tmp_path, "u", UNSOUND_POLICIES)),
        "--json",
        "--data-dir",
        str(tmp_path / "none"),
    )
    assert code == 1
    data = json.loads(output)
    assert data["ok"] is False
    assert any(f["counterexample"] for f in data["findings"])


def test_policy_activate_refuses_then_accepts(tmp_path: Path) -> None:
    d = str(tmp_path / "d")
    _run("init", "--data-dir", d)
    code, output = _run(
        "policy", "activate", str(_policy_dir(tmp_path, "u", UNSOUND_POLICIES)), "--data-dir", d
    )
    assert code == 1
    assert "counterexample" in output
    code, output = _run(
        "policy", "activate", str(_policy_dir(tmp_path, "s", SOUND_POLICIES)), "--data-dir", d
    )
    assert code == 0, output
    status = json.loads(_run("status", "--data-dir", d, "--json")[1])
    assert status["policy_digest"].startswith("sha256:")


def test_cap_admit_attenuate_revoke(tmp_path: Path) -> None:
    d = str(tmp_path / "d")
    _run("init", "--data-dir", d)
    code, output = _run(
        "cap",
        "admit",
        "-p",
        "drac",
        "-a",
        "artifact.persist",
        "-r",
        "artifacts/drac/**",
        "--data-dir",
        d,
        "--json",
    )
    assert code == 0, output
    parent = json.loads(output)
    code, output = _run(
        "cap",
        "attenuate",
        "--token",
        parent["token"],
        "-a",
        "artifact.persist",
        "-r",
        "artifacts/drac/s1/**",
        "--data-dir",
        d,
        "--json",
    )
    assert code == 0, output
    child = json.loads(output)
    assert child["capability"]["parent_id"] == parent["capability"]["id"]
    code, output = _run("cap", "revoke", parent["capability"]["id"], "--data-dir", d, "--json")
    assert code == 0
    assert set(json.loads(output)["revoked"]) == {
        parent["capability"]["id"],
        child["capability"]["id"],
    }


def test_cap_attenuate_wider_is_refused_with_reason(tmp_path: Path) -> None:
    d = str(tmp_path / "d")
    _run("init", "--data-dir", d)
    parent = json.loads(
        _run(
            "cap",
            "admit",
            "-p",
            "drac",
            "-a",
            "artifact.persist",
            "-r",
            "artifacts/drac/**",
            "--data-dir",
            d,
            "--json",
        )[1]
    )
    code, output = _run(
        "cap",
        "attenuate",
        "--token",
        parent["token"],
        "-a",
        "artifact.persist",
        "-r",
        "artifacts/**",
        "--data-dir",
        d,
    )
    assert code == 2
    assert "artifacts/**" in output
