"""The attacks of issue 13 on stored state, each refused with where it is (INV-11).

The attacker writes ``sop.db`` (plain ``sqlite3``, triggers dropped) but cannot
read ``keys/``. Each test tampers with a copy of one demo data directory, then
checks that boot refuses naming the table, the row and the log entry, that
``sop state check`` finds the same, and, where it applies, that
``sop state repair`` rebuilds the state from the log and logs that it did.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from attacker import attacker_db
from typer.testing import CliRunner

from sop_verified.cli import app
from sop_verified.core.health import Health
from sop_verified.nexus.demo import run_demo
from sop_verified.nexus.sop import SOP

runner = CliRunner()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("demo") / "data"
    run_demo(data)
    return data


@pytest.fixture
def data(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(pristine, copy)
    return copy


def _cli(*args: str) -> tuple[int, dict[str, object]]:
    result = runner.invoke(app, [*args, "--json"])
    return result.exit_code, json.loads(result.output)


def _boot_detail(data: Path) -> str:
    sop = SOP.boot(data)
    try:
        assert sop.health is Health.FAILED
        assert sop.boot_report.failed == "state"
        return " ".join(sop.boot_report.detail.split())
    finally:
        sop.close()


def _last_entry(data: Path) -> dict[str, object]:
    db = sqlite3.connect(data / "sop.db")
    (payload,) = db.execute("SELECT payload FROM log_entries ORDER BY idx DESC LIMIT 1").fetchone()
    db.close()
    return dict(json.loads(payload))


def test_deleted_revocations_are_named_and_repaired_from_the_log(data: Path) -> None:
    db = attacker_db(data / "sop.db")
    revoked = {r[0] for r in db.execute("SELECT id FROM revocations")}
    assert revoked, "the demo revokes a capability"
    db.execute("DELETE FROM revocations")
    db.close()
    detail = _boot_detail(data)
    assert "derived table `revocations` does not match its seal: 1 rows sealed, 0 found" in detail
    assert "first mismatch: table `revocations`, row `cap-" in detail
    assert "(log entry " in detail and "found no row" in detail
    code, check = _cli("state", "check", "--data-dir", str(data))
    assert code == 1 and check["total_mismatches"] == 1
    code, report = _cli("state", "repair", "--data-dir", str(data))
    assert code == 0, report
    assert report["rows_differing"] == 1
    entry = _last_entry(data)
    assert (entry["op"], entry["rows_differing"]) == ("state.repair", 1)  # the repair is logged
    with SOP.boot(data) as sop:
        assert sop.health is Health.READY
        assert all(sop.capabilities.is_revoked(i) for i in revoked)  # back, from the log
    assert _cli("state", "check", "--data-dir", str(data))[0] == 0


def test_an_appended_policy_set_is_refused_and_the_logged_one_restored(data: Path) -> None:
    db = attacker_db(data / "sop.db")
    (digest, _document) = db.execute(
        "SELECT digest, document FROM policy_sets ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    db.execute(
        "INSERT INTO policy_sets (digest, document, activated_at) VALUES (?, ?, ?)",
        ("sha256:" + "ab" * 32, b'{"permit": "everything"}', 1),
    )
    db.close()
    detail = _boot_detail(data)
    assert "derived table `policy_sets` does not match its seal: 1 rows sealed, 2 found" in detail
    assert "table `policy_sets`, row `sha256:abab" in detail
    assert _cli("state", "repair", "--data-dir", str(data))[0] == 0
    with SOP.boot(data) as sop:
        assert sop.policy is not None and sop.policy.digest == digest


def test_deleted_verdicts_are_refused(data: Path) -> None:
    db = attacker_db(data / "sop.db")
    (count,) = db.execute("SELECT COUNT(*) FROM verdicts").fetchone()
    db.execute("DELETE FROM verdicts")
    db.close()
    detail = _boot_detail(data)
    assert (
        f"derived table `verdicts` does not match its seal: {count} rows sealed, 0 found" in detail
    )


def test_an_edited_verdict_is_named_as_altered(data: Path) -> None:
    db = attacker_db(data / "sop.db")
    db.execute(
        "UPDATE verdicts SET record = CAST(replace(CAST(record AS TEXT), 'REFUTED', 'PROVED')"
        " AS BLOB) WHERE CAST(record AS TEXT) LIKE '%REFUTED%'"
    )
    db.close()
    detail = _boot_detail(data)
    assert "derived table `verdicts` does not match its seal" in detail
    assert "expected a record whose verdict seal verifies, found an altered one" in detail
    code, report = _cli("state", "repair", "--data-dir", str(data))
    assert code == 0 and report["unauthenticated_rows_dropped"]["verdicts"] >= 1
    with SOP.boot(data) as sop:
        assert sop.health is Health.READY


def test_deleted_protocol_records_are_named_and_restored(data: Path) -> None:
    db = attacker_db(data / "sop.db")
    rows = db.execute(
        "SELECT log_index, kind FROM protocol_records"
        " WHERE kind IN ('csp.resume', 'csp.snapshot.revoke')"
    ).fetchall()
    assert rows, "the demo resumes a snapshot"
    for index, _ in rows:
        db.execute("DELETE FROM protocol_records WHERE log_index = ?", (index,))
    db.close()
    detail = _boot_detail(data)
    assert "derived table `protocol_records` does not match its seal" in detail
    assert f"row `{min(r[0] for r in rows)}` (log entry {min(r[0] for r in rows)})" in detail
    assert _cli("state", "repair", "--data-dir", str(data))[0] == 0
    db = sqlite3.connect(data / "sop.db")
    back = {r[0] for r in db.execute("SELECT log_index FROM protocol_records")}
    db.close()
    assert {r[0] for r in rows} <= back


def test_repair_refuses_a_log_that_does_not_verify(data: Path) -> None:
    db = attacker_db(data / "sop.db")
    db.execute("UPDATE log_entries SET payload = CAST('{}' AS BLOB) WHERE idx = 3")
    db.close()
    before = (data / "sop.db").read_bytes()
    code, report = _cli("state", "repair", "--data-dir", str(data))
    assert code == 1 and not report["ok"]
    assert "the log does not verify" in str(report["message"]) and report["exit"] == 1
    assert (data / "sop.db").read_bytes() == before  # nothing changed
    assert not list(data.glob("sop.db.replaced-*"))


def test_an_edited_configuration_is_refused_until_accepted_and_the_accept_is_logged(
    data: Path,
) -> None:
    toml = data / "sop.toml"
    toml.write_text(toml.read_text().replace("max_blob_bytes = ", "max_blob_bytes = 9"))
    sop = SOP.boot(data)
    try:
        assert sop.health is Health.FAILED and sop.boot_report.failed == "state"
        assert "`sop.toml` is not the configuration SOP accepted" in sop.boot_report.detail
    finally:
        sop.close()
    code, report = _cli("log", "verify", "--data-dir", str(data))
    assert code == 1 and report["findings"][0]["kind"] == "derived_state"
    code, accepted = _cli("config", "accept", "--data-dir", str(data))
    assert code == 0, accepted
    entry = _last_entry(data)
    assert (entry["op"], entry["config_digest"]) == ("config.accept", accepted["config_digest"])
    with SOP.boot(data) as sop:
        assert sop.health is Health.READY
    assert _cli("state", "check", "--data-dir", str(data))[0] == 0  # the rebuild agrees


def test_accepting_a_configuration_refuses_tampered_state(data: Path) -> None:
    attacker_db(data / "sop.db").execute("DELETE FROM revocations")
    result = runner.invoke(app, ["config", "accept", "--data-dir", str(data)])
    assert result.exit_code == 1  # refused: an integrity alarm (the exit-code table's 1)
    assert "derived table `revocations` does not match its seal" in " ".join(result.output.split())
