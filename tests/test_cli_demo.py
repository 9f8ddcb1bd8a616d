"""`sop demo`: intended refusals marked, its temporary directory removed unless kept, next steps."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sop_verified.cli import app
from sop_verified.errors import SOPError

runner = CliRunner()


@pytest.fixture
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the demo makes its temporary directory in this test (nothing else goes there)."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def test_demo_marks_what_it_means_and_removes_its_temporary_directory(temp_root: Path) -> None:
    result = runner.invoke(app, ["demo", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["refused_policy_set"]["expected"] is True  # the unsound set's refusal is meant
    assert data["unexpected"] == 0
    assert all(r["effect"] == r["expected"] for r in data["requests"])
    assert {"ALLOW", "DENY"} == {r["expected"] for r in data["requests"]}
    assert data["policy_tests"]["passed"] == 12 and data["policy_tests"]["failed"] == 0
    assert len(data["alarms"]) == 1 and "integrity alarm" in data["alarms"][0]  # the edited blob
    assert data["kept"] is False and not Path(data["data_dir"]).exists()
    assert list(temp_root.iterdir()) == []  # nothing of the demo is left behind
    joined = "\n".join(data["next"])
    for command in ("sop demo --keep", "sop decide", "sop policy test", "sop log verify"):
        assert command in joined


def test_keep_keeps_it_and_the_next_commands_use_it(temp_root: Path) -> None:
    result = runner.invoke(app, ["demo", "--keep"])
    assert result.exit_code == 0, result.output
    (kept,) = list(temp_root.iterdir())
    data_dir = kept / "data"
    assert (data_dir / "sop.toml").is_file()
    assert (data_dir / "policies" / "sound" / "tests" / "demo.toml").is_file()
    text = result.output
    flat = " ".join(text.split())  # the console's wrapping undone
    assert "expected: the unsound policy set is refused" in flat
    assert "every DENY is an intended refusal" in flat
    assert "expected: the edited blob raised an integrity alarm" in flat
    assert f"data directory kept: {data_dir}" in flat
    assert f"sop policy test {data_dir}/policies/sound/tests" in text
    assert f"sop log verify --data-dir {data_dir}" in text
    code = runner.invoke(app, ["policy", "test", f"{data_dir}/policies/sound/tests"]).exit_code
    assert code == 0  # the suggested command works on the kept directory


def test_a_failing_demo_removes_its_temporary_directory_too(
    temp_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sop_verified.nexus.demo as demo

    def boom(data_dir: Path, *, dsn: str | None = None) -> None:
        data_dir.mkdir(parents=True)
        (data_dir / "half-made").write_text("x")
        raise SOPError("the demo could not boot SOP")

    monkeypatch.setattr(demo, "run_demo", boom)
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 2 and "could not boot" in result.output
    assert list(temp_root.iterdir()) == []
