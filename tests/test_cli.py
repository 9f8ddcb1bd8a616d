"""The `sop` command: demo, init, status, policy check/activate, capabilities; --json shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from attacker import attacker_db
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
        "obligation_refuted",
    } <= denial_codes
    verdicts = {r["verdict"]: r for r in data["requests"] if "verdict" in r}
    assert set(verdicts) == {"PROVED", "REFUTED", "UNKNOWN"}
    assert verdicts["PROVED"]["effect"] == "ALLOW"
    assert verdicts["REFUTED"]["evidence"]["model"]
    assert data["refused_policy_set"]["counterexample"]["action"] == "artifact.persist"
    session = data["session"]
    codes = {(r["act"], r["effect"], r["code"]) for r in session["rows"]}
    assert ("DRAC", "DENY", "out_of_order") in codes
    assert ("EMP", "DENY", "immutability_violation") in codes
    assert ("CSP", "DENY", "blob_digest") in codes
    assert ("SOP", "DENY", "bad_request") in codes
    labels = {r["label"]: r["effect"] for r in session["rows"]}
    assert labels["resume it (signature, blobs, inclusion, lineage)"] == "ALLOW"
    assert sum(r["effect"] == "ALLOW" for r in session["rows"]) >= 18
    assert session["receipts_verified"] == sum(r["log_index"] is not None for r in session["rows"])
    assert session["log_verify"]["ok"] is True


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


def test_policy_check_reports_counterexample_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./sop-data: the default scopes are used
    code, output = _run(
        "policy", "check", str(_policy_dir(tmp_path, "u", UNSOUND_POLICIES)), "--json"
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
    assert code == 1  # refused (an AttenuationError): the exit-code table's 1
    assert "artifacts/**" in output


def test_prove_exit_status_follows_the_verdict(tmp_path: Path) -> None:
    proved = tmp_path / "p.smt2"
    proved.write_text("(set-logic QF_LIA)\n(declare-const x Int)\n(assert (> x x))\n")
    refuted = tmp_path / "r.smt2"
    refuted.write_text("(set-logic QF_LIA)\n(declare-const x Int)\n(assert (= x 3))\n")
    code, output = _run("prove", str(proved), "--json")
    assert (code, json.loads(output)["verdict"]) == (0, "PROVED")
    code, output = _run("prove", str(refuted), "--json")
    assert code != 0
    assert json.loads(output)["evidence"]["model"] == {"x": "3"}


def test_proofs_replay_detects_a_tampered_verdict(tmp_path: Path) -> None:

    d = tmp_path / "d"
    assert _run("demo", "--data-dir", str(d), "--json")[0] == 0
    code, output = _run("proofs", "replay", "--data-dir", str(d), "--json")
    assert code == 0, output
    clean = json.loads(output)
    assert clean["checked"] >= 2
    assert clean["disagreements"] == []
    db = attacker_db(d / "sop.db")  # an attacker with write access to the file
    rows = db.execute("SELECT digest, record FROM verdicts").fetchall()
    for digest, record in rows:
        db.execute(
            "UPDATE verdicts SET record = ? WHERE digest = ?",
            (record.replace(b"REFUTED", b"PROVED"), digest),
        )
    db.commit()
    db.close()
    code, output = _run("proofs", "replay", "--data-dir", str(d), "--json")
    assert code == 1  # spec: INV-11 — SOP refuses to boot on the edited verdicts (integrity: 1)
    assert "derived table `verdicts` does not match its seal" in " ".join(output.split())


def test_verdict_store_is_write_once(tmp_path: Path) -> None:
    import sqlite3

    from sop_verified.storage.sqlite_seal import register

    d = tmp_path / "d"
    assert _run("demo", "--data-dir", str(d), "--json")[0] == 0
    db = sqlite3.connect(d / "sop.db")
    register(db, None)  # the seal's functions exist but refuse: the write-once guard speaks first
    for sql in ("UPDATE verdicts SET record = x'00'", "DELETE FROM verdicts"):
        with pytest.raises(sqlite3.IntegrityError, match="write-once"):
            db.execute(sql)


def test_an_altered_verdict_record_cannot_let_a_false_obligation_through(tmp_path: Path) -> None:

    from sop_verified.core.proofgate import obligation_digest
    from sop_verified.core.request import Permission
    from sop_verified.nexus.demo import OBLIGATIONS
    from sop_verified.nexus.sop import SOP

    d = tmp_path / "d"
    assert _run("demo", "--data-dir", str(d), "--json")[0] == 0
    db = attacker_db(d / "sop.db")
    target = obligation_digest("smt2", OBLIGATIONS[1][1]["source"])
    (record,) = db.execute("SELECT record FROM verdicts WHERE digest = ?", (target,)).fetchone()
    assert b"REFUTED" in record
    changed = db.execute(
        "UPDATE verdicts SET record = ? WHERE digest = ?",
        (record.replace(b"REFUTED", b"PROVED"), target),
    ).rowcount
    db.commit()
    db.close()
    assert changed == 1
    sop = SOP.boot(d)
    try:  # spec: INV-11 — the edited row no longer matches the state seal: boot refuses
        assert sop.health.value == "FAILED"
        assert "derived table `verdicts` does not match its seal" in sop.boot_report.detail
        outcome = sop.emp.submit_obligation(OBLIGATIONS[1][1], token="sopcap1.x.e30.AAAA")
    finally:
        sop.close()
    assert outcome.decision.effect is Permission.DENY
