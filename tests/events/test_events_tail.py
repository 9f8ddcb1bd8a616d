"""`sop events tail`: the log's events for people and scripts; read-only, followed, two backends."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from follower import read_lines, start_follower
from pg_server import DSN, drop_schema, new_schema_name
from typer.testing import CliRunner

from sop_verified.cli import app
from sop_verified.core.request import Request
from sop_verified.nexus.event_ops import DataDirEvents
from sop_verified.nexus.sop import SOP

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
_SOP = (sys.executable, "-m", "sop_verified.cli")


def _tail(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["events", "tail", *args])
    return result.exit_code, result.output


def _tree(data_dir: Path) -> dict[str, tuple[int, str]]:
    """Every path under ``data_dir`` with its mode and the SHA-256 of its bytes."""
    out = {}
    for path in sorted(data_dir.rglob("*")):
        st = path.lstat()
        body = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        out[str(path.relative_to(data_dir))] = (st.st_mode, body)
    return out


def _events(data_dir: Path) -> list[bytes]:
    with DataDirEvents(data_dir) as source:
        size = source.refresh()
        return [e.body for e in source.read(0, size)]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}


def test_tail_changes_no_byte_of_the_data_directory(rich_log: Path) -> None:
    before = _tree(rich_log)
    assert not (rich_log / "sop.db-wal").exists()
    for args in ([], ["--json"], ["--type", "decision", "--from", "-5"], ["--from", "3"]):
        code, _ = _tail("--data-dir", str(rich_log), *args)
        assert code == 0
    assert _tree(rich_log) == before


def test_tail_json_prints_each_event_once_as_the_subscribers_get_it(rich_log: Path) -> None:
    done = subprocess.run(  # another process: the same bytes (the projection is deterministic)
        [*_SOP, "events", "tail", "--json", "--data-dir", str(rich_log)],
        capture_output=True,
        env=_env(),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == _events(rich_log)


def _entry_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if not line.split()[0].startswith("@")]


def _entries(data_dir: Path) -> int:
    with DataDirEvents(data_dir) as source:
        source.refresh()
        return source.signed_size()


def test_tail_text_is_one_readable_line_per_event(rich_log: Path) -> None:
    code, output = _tail("--data-dir", str(rich_log), "--from", "-3")
    lines = _entry_lines(output)
    size = _entries(rich_log)
    assert code == 0 and len(lines) == 3
    assert [int(line.split()[0]) for line in lines] == [size - 3, size - 2, size - 1]
    assert "log.reanchor" in lines[-1] and "config.accept" in lines[-2]
    checkpoint = output.splitlines()[-1].split()  # the last: the checkpoint of the whole log
    assert checkpoint[:4] == [f"@{size}", "-", "checkpoint", "size"]
    code, output = _tail("--data-dir", str(rich_log), "--type", "decision", "--from", "40")
    first = output.splitlines()[0].split()
    assert first[0] == "40" and first[1] == "2027-01-15T08:00:00Z" and first[2] == "decision"
    assert "DENY obligation.submit" in output and "(obligation/obligation_refuted)" in output


def test_a_type_filter_keeps_only_that_type(rich_log: Path) -> None:
    code, output = _tail(
        "--data-dir", str(rich_log), "--json", "-t", "sop.csp.seal.v1", "-t", "boot"
    )
    types = [orjson.loads(line)["type"] for line in output.splitlines()]
    assert code == 0 and set(types) == {"sop.csp.seal.v1", "sop.boot.v1"}
    assert len(types) == sum(1 for e in _events(rich_log) if b'"type":"sop.csp.seal.v1"' in e) + 2


def test_bad_input_exits_2_and_a_log_that_does_not_verify_exits_1(
    rich_log: Path, tmp_path: Path
) -> None:
    code, output = _tail("--data-dir", str(rich_log), "--type", "decisions")
    assert code == 2 and "unknown event type `decisions`" in output
    code, output = _tail("--data-dir", str(tmp_path / "nowhere"))
    assert code == 2 and "nothing is at" in output and "sop init" in output
    copy = tmp_path / "copy"
    shutil.copytree(rich_log, copy)
    db = sqlite3.connect(str(copy / "sop.db"), isolation_level=None)
    db.execute("DROP TRIGGER log_entries_no_update")
    db.execute("UPDATE log_entries SET payload = CAST('{}' AS BLOB) WHERE idx = 5")
    db.close()
    code, output = _tail("--data-dir", str(copy), "--json")
    assert code == 1 and "log check failed" in output and "log index `5`" in output
    *shown, error = output.splitlines()  # the events before it, then the error line
    indexes = [int(orjson.loads(line)["sopindex"]) for line in shown]
    assert sorted(set(indexes)) == [0, 1, 2, 3, 4] and "log index `5`" in error


def test_the_readme_shows_tail_commands_that_run(rich_log: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Events:", 1)[1].split("\n## ", 1)[0]
    commands = [line.split("#")[0].split() for line in section.splitlines()]
    commands = [c for c in commands if c[:3] == ["sop", "events", "tail"]]
    assert len(commands) == 2 and any("--follow" in c for c in commands)
    assert "### To NATS JetStream" in section  # the sink's subsection: a NATS consumer
    for command in commands:
        if "--follow" in command:
            continue  # test_follow_... runs it
        args = [str(rich_log) if a == "sop-data" else a for a in command[3:]]
        code, output = _tail(*args)
        assert code == 0 and len(_entry_lines(output)) == 5


def _decide(sop: SOP, n: int, tag: str) -> None:
    for i in range(n):
        request = Request(
            request_id=f"{tag}-{i}",
            principal="drac",
            action="artifact.persist",
            resource=f"artifacts/drac/{tag}-{i}.bin",
            context={"size_bytes": 5},
        )
        assert sop.submit(request).log_index is not None


def test_follow_prints_new_entries_as_they_are_logged_and_ctrl_c_exits_0(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    SOP.init(data_dir)
    with SOP.boot(data_dir) as sop:
        start = sop.log.size
        proc = start_follower(
            [
                *_SOP,
                "events",
                "tail",
                "-f",
                "--json",
                "-t",
                "decision",
                "--data-dir",
                str(data_dir),
            ],
            _env(),
        )
        try:
            _decide(sop, 3, "a")
            first = read_lines(proc, 3, 60)
            _decide(sop, 2, "b")
            later = read_lines(proc, 2, 60)
        finally:
            proc.send_signal(signal.SIGINT)
            code = proc.wait(30)
    assert code == 0, proc.stderr.read() if proc.stderr else ""
    bodies = [orjson.loads(line) for line in first + later]
    assert [b["data"]["request"]["request_id"] for b in bodies] == [
        "a-0",
        "a-1",
        "a-2",
        "b-0",
        "b-1",
    ]
    assert [int(b["sopindex"]) for b in bodies] == list(range(start, start + 5))


@pytest.fixture
def pg_data_dir(tmp_path: Path) -> Iterator[Path]:
    schema = new_schema_name()
    data_dir = tmp_path / "data"
    try:
        SOP.init(data_dir, dsn=DSN, schema=schema)
        yield data_dir
    finally:
        drop_schema(schema)


def test_tail_reads_a_postgresql_log_too(pg_data_dir: Path) -> None:
    with SOP.boot(pg_data_dir) as sop:
        _decide(sop, 4, "pg")
        size = sop.log.size
    before = _tree(pg_data_dir)
    code, output = _tail("--data-dir", str(pg_data_dir), "--json", "--type", "decision")
    assert code == 0 and _tree(pg_data_dir) == before
    bodies = [orjson.loads(line) for line in output.splitlines()]
    assert [b["data"]["request"]["request_id"] for b in bodies] == [f"pg-{i}" for i in range(4)]
    assert bodies[-1]["sopindex"] == str(size - 1)
    assert [line.encode() for line in output.splitlines()] == [
        e for e in _events(pg_data_dir) if b'"type":"sop.decision.v1"' in e
    ]
