"""`sop spec check` (sop_verified.proofs.cli): table, JSON shape, exit codes, the report file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sop_verified import proofs
from sop_verified.cli import app
from sop_verified.proofs import cli
from sop_verified.proofs.render import markdown_report
from sop_verified.proofs.results import CheckReport

ROOT = Path(__file__).resolve().parents[2]
RESULT_KEYS = {"inv", "transition", "method", "verdict", "seconds"}


@pytest.fixture
def real(monkeypatch: pytest.MonkeyPatch, proof_report: tuple[CheckReport, float]) -> CheckReport:
    report = proof_report[0]
    monkeypatch.setattr(cli, "run_all", lambda mutations: report)
    return report


@pytest.fixture
def mutant(monkeypatch: pytest.MonkeyPatch, revoke_mutant_report: CheckReport) -> CheckReport:
    monkeypatch.setattr(cli, "run_all", lambda mutations: revoke_mutant_report)
    return revoke_mutant_report


def test_json_output_is_one_object_with_the_documented_shape(
    real: CheckReport, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.spec_check(True, tmp_path / "REPORT.md") == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"ok", "results"}
    assert data["ok"] is True
    assert len(data["results"]) == len(real.results)
    for row in data["results"]:
        assert set(row) == RESULT_KEYS
        assert row["verdict"] == "PROVED"
        assert isinstance(row["seconds"], float)


def test_json_failure_carries_the_counterexample_and_exits_1(
    mutant: CheckReport, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.spec_check(True, tmp_path / "REPORT.md") == 1
    out = capsys.readouterr()
    data = json.loads(out.out)
    assert data["ok"] is False
    failed = [r for r in data["results"] if r["verdict"] != "PROVED"]
    inv10 = next(r for r in failed if r["inv"] == "INV-10")
    assert set(inv10) == RESULT_KEYS | {"counterexample"}
    cex = inv10["counterexample"]
    assert {"before", "step", "after", "broken", "trace"} <= set(cex)
    assert cex["step"]["transition"] == "revoke"
    assert "state before:" in out.err


def test_table_lists_every_check_and_exits_0(
    real: CheckReport, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.spec_check(False, tmp_path / "REPORT.md") == 0
    out = capsys.readouterr().out
    for word in ("INV-10", "revoke", "inductive", "PROVED"):
        assert word in out
    assert "checks PROVED" in out


def test_failure_prints_a_readable_counterexample_trace(
    mutant: CheckReport, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.spec_check(False, tmp_path / "REPORT.md") == 1
    out = capsys.readouterr().out
    for part in (
        "FAILED",
        "INV-10 attenuation_only broken by `revoke`",
        "state before:",
        "step: revoke(",
        "state after",
        "revoked=yes",
        "revoked=no",
    ):
        assert part in out


def test_report_is_written_with_the_table_and_z3_version(
    real: CheckReport, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "REPORT.md"
    cli.spec_check(False, path)
    text = path.read_text(encoding="utf-8")
    assert f"- z3: {real.z3_version}" in text
    assert "| INV-10 | attenuation_only | revoke | inductive | PROVED |" in text
    assert "all checks PROVED" in text


def test_report_of_a_failure_holds_the_counterexample(
    mutant: CheckReport, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "REPORT.md"
    cli.spec_check(False, path)
    text = path.read_text(encoding="utf-8")
    assert "## Counterexamples" in text
    assert "### INV-10 × revoke" in text
    assert "`revoke_forgets_descendants`" in text


def test_report_has_no_timings_so_it_is_reproducible(real: CheckReport) -> None:
    slower = dataclasses.replace(
        real,
        results=[dataclasses.replace(r, seconds=r.seconds + 1.0) for r in real.results],
        seconds=real.seconds + 9.0,
    )
    assert markdown_report(slower) == markdown_report(real)


def test_default_report_goes_to_the_current_directory_not_the_package(
    real: CheckReport,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    package_dir = Path(proofs.__file__).resolve().parent
    before = sorted(p.name for p in package_dir.iterdir())
    monkeypatch.chdir(tmp_path)
    assert cli.spec_check(False) == 0
    assert (tmp_path / "REPORT.md").read_text(encoding="utf-8") == markdown_report(real)
    assert sorted(p.name for p in package_dir.iterdir()) == before
    assert not cli.DEFAULT_REPORT.is_absolute()


def test_sop_spec_check_writes_where_out_says(real: CheckReport, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "proofs.md"
    target.parent.mkdir()
    result = CliRunner().invoke(app, ["spec", "check", "--out", str(target)])
    assert result.exit_code == 0, result.output
    assert target.read_text(encoding="utf-8") == markdown_report(real)


def test_unwritable_report_path_exits_2(
    real: CheckReport, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.spec_check(False, tmp_path / "missing" / "REPORT.md") == 2  # an input error
    assert "could not write the report" in capsys.readouterr().err


def test_committed_report_matches_the_model(real: CheckReport) -> None:
    committed = (ROOT / "proofs" / "REPORT.md").read_text(encoding="utf-8")
    assert committed == markdown_report(real), (
        "regenerate with `sop spec check --out proofs/REPORT.md`"
    )
