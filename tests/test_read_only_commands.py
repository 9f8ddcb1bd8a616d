"""Read-only means read-only: the inspection commands change no byte of the data directory.

Each of `status`, `log verify`, `log show`, `log prove`, `log checkpoint`, `cap
list`, `receipt verify`, `keys export`, `attest export`, `attest verify` and
`events tail`:

- leaves every path under the data directory with the same mode, mtime and
  bytes, and adds or removes none (no boot manifest, no log entry, no
  ``-wal``/``-shm``);
- opens SQLite only read-only (every connection a ``mode=ro`` URI);
- works on a copy nobody can write: these tests run as root, where ``chmod
  a-w`` stops nothing, so the copy is made immutable (``chattr +i``, which
  stops root too: a write, a new file or a rename fails); without
  ``chattr`` support that test is skipped.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from inspected import make_data_dir, tree
from typer.testing import CliRunner

from sop_verified.cli import app

runner = CliRunner()

Args = Callable[[Path, Path], list[str]]
"""The command's arguments for a data directory and a scratch directory outside it."""

COMMANDS: dict[str, Args] = {
    "status": lambda d, _: ["status", "--data-dir", str(d)],
    "status --json": lambda d, _: ["status", "--json", "--data-dir", str(d)],
    "log verify": lambda d, _: ["log", "verify", "--data-dir", str(d)],
    "log verify --json": lambda d, _: ["log", "verify", "--json", "--data-dir", str(d)],
    "log show": lambda d, _: ["log", "show", "--data-dir", str(d)],
    "log show --json": lambda d, _: ["log", "show", "--json", "--data-dir", str(d)],
    "log show INDEX": lambda d, _: ["log", "show", "3", "--data-dir", str(d)],
    "log prove": lambda d, _: ["log", "prove", "3", "--data-dir", str(d)],
    "log checkpoint": lambda d, _: ["log", "checkpoint", "--data-dir", str(d)],
    "cap list": lambda d, _: ["cap", "list", "--all", "--data-dir", str(d)],
    "cap list --json": lambda d, _: ["cap", "list", "--json", "--data-dir", str(d)],
    "receipt verify": lambda d, s: [
        "receipt",
        "verify",
        str(s / "entry-3.tlog-proof"),
        "--vkey",
        str(d / "keys" / "checkpoint.vkey"),
    ],
    "keys export": lambda d, _: ["keys", "export", "--data-dir", str(d)],
    "keys export --pem": lambda d, _: ["keys", "export", "--pem", "--data-dir", str(d)],
    "keys export --genesis": lambda d, _: ["keys", "export", "--genesis", "--data-dir", str(d)],
    "attest export": lambda d, s: ["attest", "export", str(s / "out"), "--data-dir", str(d)],
    "attest verify": lambda d, s: [
        "attest",
        "verify",
        str(s / "envelope.json"),
        "--pem",
        str(d / "keys" / "attestation.pub"),
    ],
    "events tail": lambda d, _: ["events", "tail", "--data-dir", str(d)],
}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("read-only") / "data"
    make_data_dir(path)
    return path


@pytest.fixture
def scratch(data: Path, tmp_path: Path) -> Path:
    """A receipt and an envelope to verify, made from ``data`` (outside it)."""
    out = tmp_path / "scratch"
    out.mkdir()
    receipt = runner.invoke(app, ["log", "prove", "3", "--data-dir", str(data)])
    (out / "entry-3.tlog-proof").write_text(receipt.stdout)
    envelopes = str(tmp_path / "envelopes")
    exported = runner.invoke(
        app, ["attest", "export", envelopes, "--json", "--data-dir", str(data)]
    )
    first = json.loads(exported.stdout)["written"][0]
    shutil.copy(first, out / "envelope.json")
    return out


def _run(args: list[str]) -> tuple[int, str]:
    result = runner.invoke(app, args)
    return result.exit_code, result.output


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_command_changes_no_byte_of_the_data_directory(
    name: str, data: Path, scratch: Path
) -> None:
    before = tree(data)
    code, output = _run(COMMANDS[name](data, scratch))
    assert code == 0, output
    assert tree(data) == before


@pytest.fixture
def sqlite_opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every database SQLite is asked to open, as the call named it."""
    opened: list[str] = []
    real = sqlite3.connect

    def spy(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        opened.append(str(database) + (" (uri)" if kwargs.get("uri") else ""))
        return real(database, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", spy)
    return opened


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_command_opens_sqlite_read_only_or_not_at_all(
    name: str, data: Path, scratch: Path, sqlite_opens: list[str]
) -> None:
    code, output = _run(COMMANDS[name](data, scratch))
    assert code == 0, output
    for database in sqlite_opens:
        assert database.startswith("file:") and database.endswith(" (uri)"), database
        assert "mode=ro" in database, database
    if name.startswith(("status", "log", "cap", "events")):
        assert sqlite_opens, "the command read the database"


def _chattr(flag: str, path: Path) -> bool:
    if shutil.which("chattr") is None:
        return False
    done = subprocess.run(["chattr", "-R", flag, str(path)], capture_output=True, check=False)
    return done.returncode == 0


@pytest.fixture
def immutable_copy(data: Path, tmp_path: Path) -> Iterator[Path]:
    """A copy of ``data`` whose every file and directory is immutable (even to root)."""
    copy = tmp_path / "frozen"
    shutil.copytree(data, copy)
    if not _chattr("+i", copy):
        _chattr("-i", copy)
        pytest.skip("`chattr +i` is not available here; a read-only copy cannot be made for root")
    try:
        probe = copy / "probe"
        with pytest.raises(PermissionError):
            probe.write_text("x")  # the copy really refuses writes
        yield copy
    finally:
        _chattr("-i", copy)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_command_works_on_a_copy_nobody_can_write(
    name: str, immutable_copy: Path, scratch: Path
) -> None:
    before = tree(immutable_copy)
    code, output = _run(COMMANDS[name](immutable_copy, scratch))
    assert code == 0, output
    assert tree(immutable_copy) == before
