"""`sop log show`: entries decoded, each proved in the signed log first; read-only; followed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import sys
from pathlib import Path

import orjson
import pytest
from follower import read_lines, start_follower
from inspected import make_data_dir, tree
from typer.testing import CliRunner

from sop_verified.cli import app
from sop_verified.nexus.sop import SOP

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
ISO = "2027-01-15T08:00:00Z"  # inspected.NOW


def _show(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["log", "show", *args])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("show") / "data"
    make_data_dir(path)
    return path


def _stored(data: Path) -> list[dict[str, object]]:
    """The payloads as the database holds them (read around SOP, for comparison)."""
    db = sqlite3.connect(f"{(data / 'sop.db').as_uri()}?mode=ro&immutable=1", uri=True)
    rows = db.execute("SELECT payload FROM log_entries ORDER BY idx").fetchall()
    db.close()
    return [orjson.loads(r[0]) for r in rows]


def test_text_is_one_line_per_entry_index_iso_time_type_summary(data: Path) -> None:
    code, output = _show("--data-dir", str(data))
    assert code == 0, output
    lines = output.splitlines()
    assert len(lines) == len(_stored(data))
    index, when, kind, *summary = lines[2].split()  # 0 and 1: the first boot's proof verdicts
    assert (index, when, kind) == ("2", ISO, "boot") and " ".join(summary).startswith("boot READY")
    assert lines[3].split()[1:3] == ["-", "attestation"]  # an attestation carries no time
    assert "boot_manifest: https://sop.local/attestation/boot-manifest/v1" in lines[3]
    by_type = {line.split()[2]: line for line in lines}
    assert "DENY artifact.read artifacts/drac/s1/x by drac (capability/" in by_type["decision"]
    assert "revoked, with its subtree: cap-" in by_type["capability.revoked"]
    assert "derived from cap-" in by_type["capability.attenuated"]


def test_json_lines_carry_each_entry_as_stored(data: Path) -> None:
    code, output = _show("--data-dir", str(data), "--json")
    assert code == 0, output
    shown = [json.loads(line) for line in output.splitlines()]
    assert [s["entry"] for s in shown] == _stored(data)
    assert [s["index"] for s in shown] == list(range(len(shown)))
    assert shown[2]["time"] == ISO and shown[2]["type"] == "boot"
    assert shown[0]["time"] is None and shown[0]["type"] == "attestation"
    assert {"index", "type", "time", "summary", "entry"} == set(shown[0])


def test_index_shows_that_entry_in_full_and_tail_the_last(data: Path) -> None:
    code, output = _show("2", "--data-dir", str(data))
    assert code == 0, output
    first, *rest = output.splitlines()
    assert first.split()[0] == "2"
    assert json.loads("\n".join(rest)) == _stored(data)[2]
    size = len(_stored(data))
    code, output = _show("--tail", "3", "--data-dir", str(data))
    assert [ln.split()[0] for ln in output.splitlines()] == [str(i) for i in range(size - 3, size)]
    code, output = _show("--tail", "1000", "--json", "--data-dir", str(data))
    assert len(output.splitlines()) == size


def test_bad_input_exits_2_saying_what_is_covered(data: Path, tmp_path: Path) -> None:
    size = len(_stored(data))
    code, output = _show(str(size), "--data-dir", str(data))
    assert code == 2 and f"covers entries 0 to {size - 1}" in " ".join(output.split())
    code, output = _show("1", "--tail", "2", "--data-dir", str(data))
    assert code == 2 and "not both" in output
    code, output = _show("--data-dir", str(tmp_path / "nowhere"), "--json")
    error = json.loads(output)
    assert code == 2 and error["exit"] == 2 and "nothing is at" in error["message"]


def test_an_edited_entry_is_never_shown_and_exits_1(data: Path, tmp_path: Path) -> None:
    # spec: INV-5 — every entry is proved included under the signed checkpoint first
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    db = sqlite3.connect(str(copy / "sop.db"), isolation_level=None)
    db.execute("DROP TRIGGER log_entries_no_update")
    forged = b'{"type":"boot","manifest":{"health":"READY"}}'
    db.execute("UPDATE log_entries SET payload = ? WHERE idx = 4", (forged,))
    db.close()
    before = tree(copy)
    code, output = _show("--data-dir", str(copy), "--json")
    assert code == 1, output
    *shown, error = output.splitlines()
    assert [json.loads(line)["index"] for line in shown] == [0, 1, 2, 3]
    problem = json.loads(error)
    assert problem["ok"] is False and problem["exit"] == 1 and problem["stage"] == "integrity"
    assert "log index `4`" in problem["message"]
    code, output = _show("4", "--data-dir", str(copy))
    assert code == 1 and "forged" not in output and "log index `4`" in output
    assert tree(copy) == before


def test_follow_shows_new_entries_as_they_are_logged_and_ctrl_c_exits_0(
    data: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    size = len(_stored(copy))
    command = ("log", "show", "--tail", "1", "-f", "--json", "--data-dir", str(copy))
    proc = start_follower(
        [sys.executable, "-m", "sop_verified.cli", *command],
        {**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        first = read_lines(proc, 1, 60)
        with SOP.boot(copy) as sop:  # a boot logs its manifest and its attestation
            for i in range(2):
                request = {"request_id": f"f-{i}", "principal": "drac", "action": "artifact.read"}
                sop.submit({**request, "resource": "artifacts/drac/x"})
        later = read_lines(proc, 4, 60)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    assert code == 0, proc.stderr.read() if proc.stderr else ""
    shown = [json.loads(line) for line in first + later]
    assert [s["index"] for s in shown] == list(range(size - 1, size + 4))
    assert [s["type"] for s in shown[1:]] == ["boot", "attestation", "decision", "decision"]


def test_the_readme_tour_shows_log_show_commands_that_run(data: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    tour = readme.split("## A tour", 1)[1].split("\n## ", 1)[0]
    commands = [line.split("#")[0].split() for line in tour.splitlines()]
    commands = [c for c in commands if c[:3] == ["sop", "log", "show"]]
    assert len(commands) == 3 and any("--follow" in c for c in commands)
    for command in commands:
        if "--follow" in command:
            continue  # test_follow_... runs it
        args = [str(data) if a == "sop-data" else a for a in command[3:]]
        code, output = _show(*args)
        assert code == 0 and output.splitlines(), (command, output)
