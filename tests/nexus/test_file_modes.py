"""Every file SOP creates is 0600 and every directory 0700, whatever the caller's umask.

SOP sets the modes at creation and never touches the process umask (it is a
library): a permissive umask (0o022, 0o000) must not make anything readable by
others, and a umask that takes the owner's own bits (0o277) must not leave a
file SOP cannot read back or a directory it cannot write into. The walk covers
the data directory while SOP is running (``sop.db-wal`` and ``-shm`` exist
then) and after it closed, the scope roots and the blobs below them, the keys
after a rotation, the boot manifest, and what the CLI writes (``sop init``,
``sop demo``, ``sop log prove --out``, ``sop attest export``).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sop_verified.cli import app
from sop_verified.core.health import Health
from sop_verified.nexus.sop import SOP
from sop_verified.storage.sqlite_protocols import SQLiteRecordIndex

NOW = 1_800_000_000
UMASKS = [
    pytest.param(0o022, id="umask-022"),
    pytest.param(0o000, id="umask-000"),
    pytest.param(0o277, id="umask-277-takes-owner-bits"),
]
POLICY = """
[[policy]]
id = "all-protocols-persist"
effect = "permit"
principal = ["drac", "emp", "csp"]
action = ["artifact.persist", "verdict.record", "state.persist", "artifact.read"]
resource = ["artifacts/drac/**", "verdicts/emp/**", "state/csp/**"]
channel = "bridge"
"""
CASES = {
    "drac": ("artifact.persist", "artifacts/drac/s1/out.bin"),
    "emp": ("verdict.record", "verdicts/emp/subject/claim"),
    "csp": ("state.persist", "state/csp/deep/k"),
}
runner = CliRunner()


@pytest.fixture(params=UMASKS)
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test under the given process umask, and put the old one back."""
    old = os.umask(request.param)
    try:
        yield int(request.param)
    finally:
        os.umask(old)


def _not_private(root: Path) -> list[str]:
    """Every entry under ``root`` (itself included) that is not a 0600 file or a 0700 directory."""
    bad = []
    for dirpath, dirs, files in os.walk(root):
        for path in [Path(dirpath)] + [Path(dirpath) / n for n in dirs + files]:
            st = path.lstat()
            want = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
            if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                bad.append(f"{path}: not a regular file or directory")
            elif stat.S_IMODE(st.st_mode) != want:
                bad.append(f"{path}: {stat.S_IMODE(st.st_mode):04o}, expected {want:04o}")
    return sorted(set(bad))


def _policy_dir(tmp_path: Path) -> Path:
    """The policy set to activate: the test's own files, outside what is walked."""
    pol = tmp_path / "pol"
    pol.mkdir(mode=0o700)
    fd = os.open(pol / "policy.toml", os.O_WRONLY | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(POLICY)
    os.chmod(pol, 0o700)
    return pol


def _persist_read_rotate(sop: SOP, pol: Path) -> None:
    sop.activate_policy(pol)
    actions = ["artifact.persist", "verdict.record", "state.persist", "artifact.read"]
    resources = ["artifacts/drac/**", "verdicts/emp/**", "state/csp/**"]
    for principal, (action, resource) in CASES.items():
        token = sop.admit(principal, actions, resources, expires=NOW + 3600)[1]
        base = {"principal": principal, "resource": resource, "capability": token}
        written = sop.persist({**base, "request_id": f"w-{principal}", "action": action}, b"x")
        assert written.allowed, written
        read = sop.read({**base, "request_id": f"r-{principal}", "action": "artifact.read"})
        assert read.data == b"x", read
    sop.rotate_checkpoint_key()


def test_sop_creates_every_file_0600_and_every_directory_0700(umask: int, tmp_path: Path) -> None:
    pol = _policy_dir(tmp_path)
    made = tmp_path / "made-by-sop"  # its parents too are SOP's to create
    data = made / "nested" / "data"
    result = runner.invoke(app, ["init", "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    sop = SOP.boot(data, now=lambda: NOW)
    try:
        assert sop.health is Health.READY, sop.boot_report
        _persist_read_rotate(sop, pol)
        assert (data / "sop.db-wal").exists()
        assert _not_private(made) == []  # while running: the -wal and -shm files
    finally:
        sop.close()
    again = SOP.boot(data, now=lambda: NOW + 10)  # a second boot rewrites the manifest
    again.close()
    assert _not_private(made) == []
    assert os.umask(umask) == umask  # SOP left the caller's umask alone


def test_cli_outputs_are_0600_and_0700(umask: int, tmp_path: Path) -> None:
    made = tmp_path / "made-by-sop"
    data = made / "demo" / "data"
    result = runner.invoke(app, ["demo", "--data-dir", str(data), "--json"])
    assert result.exit_code == 0, result.output
    receipt = made / "receipt.txt"
    result = runner.invoke(
        app, ["log", "prove", "1", "--out", str(receipt), "--data-dir", str(data)]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["attest", "export", str(made / "att" / "out"), "--data-dir", str(data)]
    )
    assert result.exit_code == 0, result.output
    assert receipt.is_file() and list((made / "att" / "out").iterdir())
    assert _not_private(made) == []
    assert os.umask(umask) == umask


def test_protocol_index_opened_first_creates_the_database_0600(umask: int, tmp_path: Path) -> None:
    index = SQLiteRecordIndex(tmp_path / "sop.db")  # the role that may open the file first
    try:
        modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in tmp_path.iterdir()}
        assert modes == dict.fromkeys(["sop.db", "sop.db-wal", "sop.db-shm"], 0o600)
    finally:
        index.close()
