"""Rollback: a log cut back behind its anchor (checkpoint.anchor, outside sop.db) is refused.

The attacker writes ``sop.db`` (not the keys): drops the insert-only triggers
and cuts entries, tiles and checkpoints back together to an earlier
checkpoint, which leaves a log consistent with itself. Boot must refuse it
(the log service fails, SOP is not READY, every decision is DENY) and
``sop log verify`` must fail, both naming the anchor and the log.
"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from golden.golden_dir import make_golden_dir
from typer.testing import CliRunner

from sop_verified.cli import app
from sop_verified.core.health import Health
from sop_verified.core.request import Permission, Stage
from sop_verified.nexus.anchor import ANCHOR_NAME
from sop_verified.nexus.reanchor import REANCHOR_OP
from sop_verified.nexus.sop import SOP
from sop_verified.tools.checkpoint import Checkpoint

NOW = 1_800_000_000
runner = CliRunner()


def _boot(data: Path) -> SOP:
    return SOP.boot(data, now=lambda: NOW)


def _decide(sop: SOP, n: int, tag: str = "r") -> None:
    for i in range(n):
        sop.submit({"request_id": f"{tag}-{i}", "principal": "drac", "action": "artifact.read"})


def _tiles(data: Path) -> set[int]:
    with sqlite3.connect(data / "sop.db") as db:
        return {int(r[0]) for r in db.execute("SELECT id FROM log_tiles")}


def _body(note: str) -> Checkpoint:
    return Checkpoint.from_text(note[: note.find("\n\n") + 1])


def _cut_back(data: Path, size: int, tiles: set[int]) -> None:
    """What the attacker does: drop the triggers, delete every row past ``size``."""
    db = sqlite3.connect(data / "sop.db")
    for table in ("log_entries", "log_tiles", "log_checkpoints"):
        db.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
        db.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    db.execute("DELETE FROM log_entries WHERE idx >= ?", (size,))
    db.execute("DELETE FROM log_checkpoints WHERE size > ?", (size,))
    db.execute(f"DELETE FROM log_tiles WHERE id NOT IN ({','.join('?' * len(tiles))})", [*tiles])
    db.commit()
    db.close()


def _verify(data: Path, *extra: str, stdin: bytes | None = None) -> tuple[int, dict[str, object]]:
    args = ["log", "verify", "--data-dir", str(data), "--json", *extra]
    result = runner.invoke(app, args, input=stdin)
    return result.exit_code, json.loads(result.output)


def _anchor_findings(report: dict[str, object]) -> list[str]:
    findings = report["findings"]
    assert isinstance(findings, list)
    return [f["message"] for f in findings if f["kind"] == "anchor"]


@pytest.fixture
def grown(tmp_path: Path) -> tuple[Path, int, str, set[int]]:
    """A data directory after two runs; returns it, the first run's size and note, its tiles."""
    data = tmp_path / "data"
    SOP.init(data)
    with _boot(data) as sop:
        _decide(sop, 20)
        size, note = sop.log.size, sop.log.checkpoint_note
    assert note is not None
    tiles = _tiles(data)
    shutil.copytree(data, tmp_path / "backup")
    with _boot(data) as sop:
        assert sop.health is Health.READY, sop.boot_report.detail
        _decide(sop, 30, "s")
    return data, size, note, tiles


def test_a_run_and_a_reboot_are_ready_and_the_anchor_is_the_latest_checkpoint(
    grown: tuple[Path, int, str, set[int]],
) -> None:
    data = grown[0]
    with _boot(data) as sop:
        assert sop.health is Health.READY, sop.boot_report.detail
        assert (data / ANCHOR_NAME).read_text() == sop.log.checkpoint_note
    assert (data / ANCHOR_NAME).stat().st_mode & 0o777 == 0o600
    assert not (data / (ANCHOR_NAME + ".tmp")).exists()
    code, report = _verify(data)
    assert code == 0, report
    assert report["anchor"]["found"] is True  # type: ignore[index]
    assert report["anchor"]["source"] == "data directory"  # type: ignore[index]


def test_log_cut_back_to_an_earlier_checkpoint_is_refused_at_boot(
    grown: tuple[Path, int, str, set[int]],
) -> None:
    data, size, note, tiles = grown
    anchored = _body((data / ANCHOR_NAME).read_text())
    _cut_back(data, size, tiles)
    sop = _boot(data)
    try:
        assert sop.health is Health.FAILED
        assert sop.boot_report.failed == "log"
        detail = sop.boot_report.detail
        assert ANCHOR_NAME in detail
        assert f"size `{anchored.size}`, root `{anchored.root_hash.hex()}`" in detail  # expected
        assert f"size `{size}`, root `{_body(note).root_hash.hex()}`" in detail  # found
        assert "sop log anchor --accept-current" in detail  # what to do
        decision = sop.submit({"request_id": "x", "principal": "drac", "action": "artifact.read"})
        assert decision.effect is Permission.DENY
        assert decision.reasons[0].stage is Stage.HEALTH
    finally:
        sop.close()


def test_log_cut_back_fails_sop_log_verify_naming_anchor_and_log(
    grown: tuple[Path, int, str, set[int]],
) -> None:
    data, size, _, tiles = grown
    anchored = _body((data / ANCHOR_NAME).read_text())
    _cut_back(data, size, tiles)
    code, report = _verify(data)
    assert code == 1
    (message,) = _anchor_findings(report)
    assert f"the log ends at `{size}` entries" in message
    assert f"the anchor signs `{anchored.size}`" in message
    assert report["anchor"]["size"] == anchored.size  # type: ignore[index]
    human = runner.invoke(app, ["log", "verify", "--data-dir", str(data)])
    assert human.exit_code == 1
    assert "checked against the rollback anchor" in " ".join(human.output.split())


def test_whole_data_directory_rolled_back_is_caught_only_by_an_anchor_kept_elsewhere(
    grown: tuple[Path, int, str, set[int]], tmp_path: Path
) -> None:
    """docs/ROLLBACK.md: database and anchor replaced by an older consistent pair."""
    data = grown[0]
    kept = tmp_path / "off-machine.anchor"
    shutil.copyfile(data / ANCHOR_NAME, kept)
    shutil.rmtree(data)
    shutil.copytree(tmp_path / "backup", data)  # sop.db and its anchor, from the first run
    with _boot(data) as sop:
        assert sop.health is Health.READY  # nothing inside the data directory shows it
    code, report = _verify(data)
    assert code == 0, report
    code, report = _verify(data, "--anchor", str(kept))
    assert code == 1
    assert _anchor_findings(report)
    assert report["anchor"]["source"] == "given"  # type: ignore[index]
    code, piped = _verify(data, "--anchor", "-", stdin=kept.read_bytes())  # the same, piped in
    assert code == 1
    assert _anchor_findings(piped) == _anchor_findings(report)
    assert piped["anchor"]["path"] == "standard input"  # type: ignore[index]


def test_rollback_across_a_key_rotation_is_refused_by_the_key_files(
    grown: tuple[Path, int, str, set[int]], tmp_path: Path
) -> None:
    """docs/ROLLBACK.md: an older pair signed only by the retired key does not open."""
    data = grown[0]
    with _boot(data) as sop:
        sop.rotate_checkpoint_key()
    for name in ("sop.db", "sop.db-wal", "sop.db-shm", ANCHOR_NAME):
        (data / name).unlink(missing_ok=True)
        if (tmp_path / "backup" / name).exists():
            shutil.copyfile(tmp_path / "backup" / name, data / name)
    sop = _boot(data)
    try:
        assert (sop.health, sop.boot_report.failed) == (Health.FAILED, "log")
        assert "no signature by a known key" in sop.boot_report.detail
    finally:
        sop.close()


def test_a_missing_given_anchor_is_bad_input(
    grown: tuple[Path, int, str, set[int]], tmp_path: Path
) -> None:
    result = runner.invoke(
        app, ["log", "verify", "--data-dir", str(grown[0]), "--anchor", str(tmp_path / "no")]
    )
    assert result.exit_code == 2
    assert "nothing is at" in result.output and "expected a rollback anchor" in result.output


def test_an_anchor_on_standard_input_is_read_once_and_checked_as_a_file_is(
    grown: tuple[Path, int, str, set[int]],
) -> None:
    data = grown[0]
    note = (data / ANCHOR_NAME).read_bytes()
    code, report = _verify(data, "--anchor", "-", stdin=note)
    assert code == 0, report
    assert report["anchor"]["found"] is True  # type: ignore[index]
    for stdin, says in ((b"", "standard input"), (b"\xff\xfe", "not UTF-8")):
        result = runner.invoke(
            app, ["log", "verify", "--data-dir", str(data), "--anchor", "-"], input=stdin
        )
        assert result.exit_code == 2, result.output
        assert says in " ".join(result.output.split())
    garbage = runner.invoke(
        app, ["log", "verify", "--data-dir", str(data), "--anchor", "-"], input="garbage\n"
    )
    assert garbage.exit_code == 1, garbage.output
    assert "not a checkpoint" in garbage.output and "None" not in garbage.output
    twice = runner.invoke(
        app,
        ["log", "verify", "--data-dir", str(data), "--anchor", "-", "--checkpoint", "-"],
        input=note,
    )
    assert twice.exit_code == 2 and "can be read once" in " ".join(twice.output.split())


def test_a_lagging_anchor_is_accepted(
    grown: tuple[Path, int, str, set[int]],
) -> None:
    """A crash between the commit and the anchor's rename leaves an older anchor: not a rollback."""
    data, size, note, _ = grown
    (data / ANCHOR_NAME).write_text(note)
    code, report = _verify(data)
    assert code == 0, report
    with _boot(data) as sop:
        assert sop.health is Health.READY, sop.boot_report.detail
        assert sop.log.size > size
        assert (data / ANCHOR_NAME).read_text() == sop.log.checkpoint_note  # the boot entry


_CRASH_BEFORE_THE_ANCHOR = """
import os, signal, sys
from pathlib import Path
from sop_verified.nexus import anchor
from sop_verified.nexus.sop import SOP
anchor.write_anchor = lambda path, note: os.kill(os.getpid(), signal.SIGKILL)
SOP.boot(Path(sys.argv[1]))
"""


def test_a_crash_between_the_commit_and_the_anchor_leaves_a_bootable_lag(
    grown: tuple[Path, int, str, set[int]],
) -> None:
    data = grown[0]
    before = (data / ANCHOR_NAME).read_text()
    child = subprocess.run(
        [sys.executable, "-c", _CRASH_BEFORE_THE_ANCHOR, str(data)], check=False, timeout=240
    )
    assert child.returncode == -signal.SIGKILL
    assert (data / ANCHOR_NAME).read_text() == before  # the boot entry committed, unanchored
    with _boot(data) as sop:
        assert sop.health is Health.READY, sop.boot_report.detail
        assert _body(before).size < sop.log.size


def test_deleted_anchor_is_refused_until_accepted_on_purpose(
    grown: tuple[Path, int, str, set[int]],
) -> None:
    data = grown[0]
    (data / ANCHOR_NAME).unlink()
    sop = _boot(data)
    try:
        assert (sop.health, sop.boot_report.failed) == (Health.FAILED, "log")
        assert "no rollback anchor" in sop.boot_report.detail
        assert "sop log anchor --accept-current" in sop.boot_report.detail
    finally:
        sop.close()
    code, report = _verify(data)
    assert code == 1
    assert any("no rollback anchor" in m for m in _anchor_findings(report))
    refused = runner.invoke(app, ["log", "anchor", "--data-dir", str(data)])
    assert refused.exit_code == 2  # nothing happens without --accept-current
    result = runner.invoke(
        app, ["log", "anchor", "--accept-current", "--data-dir", str(data), "--json"]
    )
    assert result.exit_code == 0, result.output
    done = json.loads(result.output)
    assert done["previous"] is None
    with _boot(data) as sop:
        assert sop.health is Health.READY, sop.boot_report.detail
        entry = json.loads(sop.log.entry(done["entry"]))
    assert (entry["op"], entry["previous"], entry["accepted"]) == (
        REANCHOR_OP,
        None,
        done["accepted"],
    )
    assert _verify(data)[0] == 0


def test_re_anchoring_refuses_a_log_that_does_not_verify(
    grown: tuple[Path, int, str, set[int]],
) -> None:
    data = grown[0]
    db = sqlite3.connect(data / "sop.db")
    db.execute("DROP TRIGGER log_entries_no_update")
    db.execute("UPDATE log_entries SET payload = x'00' WHERE idx = 3")
    db.commit()
    db.close()
    before = (data / ANCHOR_NAME).read_bytes()
    result = runner.invoke(app, ["log", "anchor", "--accept-current", "--data-dir", str(data)])
    assert result.exit_code == 1  # refused: the log does not verify (an integrity alarm)
    assert "refusing to re-anchor a log that does not verify" in " ".join(result.output.split())
    assert (data / ANCHOR_NAME).read_bytes() == before


def _twin(root: Path, name: str, tag: str, decisions: int) -> Path:
    """A golden data directory (fixed keys and clock: identical boots), then its own decisions."""
    data = root / name
    make_golden_dir(data)
    with _boot(data) as sop:
        assert sop.health is Health.READY, sop.boot_report.detail
        _decide(sop, decisions, tag)
    return data


def test_forked_log_of_the_same_size_is_refused(tmp_path: Path) -> None:
    one = _twin(tmp_path, "one", "a", 5)
    two = _twin(tmp_path, "two", "b", 5)
    one_cp, two_cp = (_body((d / ANCHOR_NAME).read_text()) for d in (one, two))
    assert one_cp.size == two_cp.size and one_cp.root_hash != two_cp.root_hash  # a fork
    shutil.copyfile(one / ANCHOR_NAME, two / ANCHOR_NAME)
    sop = _boot(two)
    try:
        assert (sop.health, sop.boot_report.failed) == (Health.FAILED, "log")
        assert "is not the kept checkpoint" in sop.boot_report.detail
        assert one_cp.root_hash.hex() in sop.boot_report.detail
        assert two_cp.root_hash.hex() in sop.boot_report.detail
    finally:
        sop.close()
    code, report = _verify(two)
    assert code == 1
    assert _anchor_findings(report)


def test_forked_log_that_grew_past_the_anchor_is_refused(tmp_path: Path) -> None:
    one = _twin(tmp_path, "one", "a", 5)
    two = _twin(tmp_path, "two", "b", 9)  # same boot entries, then another branch, longer
    anchored = _body((one / ANCHOR_NAME).read_text())
    assert _body((two / ANCHOR_NAME).read_text()).size > anchored.size
    shutil.copyfile(one / ANCHOR_NAME, two / ANCHOR_NAME)
    sop = _boot(two)
    try:
        assert (sop.health, sop.boot_report.failed) == (Health.FAILED, "log")
        assert "is not consistent with the kept checkpoint" in sop.boot_report.detail
    finally:
        sop.close()
    assert _anchor_findings(_verify(two)[1])


def test_anchor_that_cannot_be_written_stops_the_log_and_raises_the_alarm(tmp_path: Path) -> None:
    data = tmp_path / "data"
    SOP.init(data)
    with _boot(data) as sop:
        assert sop.health is Health.READY
        (data / ANCHOR_NAME).unlink()
        (data / ANCHOR_NAME).mkdir()  # the rename over it fails
        size = sop.log.size
        first = sop.submit({"request_id": "a", "principal": "drac", "action": "artifact.read"})
        assert sop.log.size == size + 1  # that batch committed and was answered
        assert first.reasons[0].stage is not Stage.HEALTH
        assert sop.registry.health() is Health.DEGRADED
        later = sop.submit({"request_id": "b", "principal": "drac", "action": "artifact.read"})
        assert later.effect is Permission.DENY
        assert sop.log.size == size + 1  # nothing more is appended
