"""`sop status` without a server: boot's checks, read-only; tampering is FAILED with its reason."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from attacker import attacker_db
from inspected import make_data_dir, tree

from sop_verified.nexus.keys import STAGED_KEY, stage_checkpoint_key
from sop_verified.nexus.status_ops import inspect_status
from sop_verified.storage.sqlite_log import LOG_SCHEMA
from sop_verified.storage.sqlite_seal import SEAL_SCHEMA

BOOT_CHECKS = (
    "config",
    "keys",
    "storage",
    "log",
    "state",
    "capabilities",
    "policy",
    "witness",
    "events_nats",
)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("status") / "data"
    make_data_dir(path)
    return path


@pytest.fixture
def copy(data: Path, tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(data, target)
    return target


def _health(status: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["health"] for c in status["checks"]}


def test_an_untouched_data_directory_is_ready_and_unchanged(data: Path) -> None:
    before = tree(data)
    status = inspect_status(data)
    assert tree(data) == before  # no boot manifest, no log entry, no -wal
    assert status["health"] == "READY" and status["reason"] is None
    checked = {n for n, h in _health(status).items() if h != "NOT_CHECKED"}
    assert checked == set(BOOT_CHECKS)
    assert status["log_size"] and status["policy_digest"].startswith("sha256:")
    assert status["boot_order"][0] == "config"


def test_an_edited_log_entry_in_the_middle_is_failed_with_its_index(copy: Path) -> None:
    # spec: INV-5 — boot's tail check passes this log; the status audits every entry
    db = attacker_db(copy / "sop.db")
    db.execute('UPDATE log_entries SET payload = CAST(\'{"type":"boot"}\' AS BLOB) WHERE idx = 2')
    db.executescript(LOG_SCHEMA + SEAL_SCHEMA)
    db.close()
    status = inspect_status(copy)
    assert status["health"] == "FAILED"
    assert _health(status)["log"] == "FAILED" and _health(status)["state"] == "NOT_CHECKED"
    assert str(status["reason"]).startswith("log: ")
    assert "first at index 2" in str(status["reason"])


def test_an_edited_derived_row_is_failed_at_the_state_check(copy: Path) -> None:  # spec: INV-11
    db = attacker_db(copy / "sop.db")
    db.execute("UPDATE revocations SET at = at + 1")
    db.executescript(LOG_SCHEMA + SEAL_SCHEMA)
    db.close()
    status = inspect_status(copy)
    assert status["health"] == "FAILED"
    assert _health(status)["log"] == "READY" and _health(status)["state"] == "FAILED"
    assert "table `revocations`" in str(status["reason"])


def test_an_edited_config_is_failed_until_accepted(copy: Path) -> None:  # spec: INV-11
    config = copy / "sop.toml"
    config.write_text(config.read_text().replace("keep = 8,", "keep = 9,", 1))
    status = inspect_status(copy)
    assert status["health"] == "FAILED" and _health(status)["state"] == "FAILED"
    assert "sop config accept" in str(status["reason"])


def test_a_lost_anchor_is_failed(copy: Path) -> None:  # spec: INV-5
    (copy / "checkpoint.anchor").unlink()
    status = inspect_status(copy)
    assert status["health"] == "FAILED" and _health(status)["log"] == "FAILED"
    assert "no rollback anchor" in str(status["reason"])


def test_a_missing_key_is_failed_at_the_keys_check(copy: Path) -> None:
    (copy / "keys" / "attestation.key").unlink()
    status = inspect_status(copy)
    assert status["health"] == "FAILED" and _health(status)["keys"] == "FAILED"
    assert _health(status)["log"] == "NOT_CHECKED"


def test_a_staged_key_rotation_is_degraded_with_the_reason(copy: Path) -> None:
    stage_checkpoint_key(copy, "sop.local/log")  # a rotation a crash interrupted
    status = inspect_status(copy)
    assert status["health"] == "DEGRADED"
    assert STAGED_KEY in str(status["reason"])
    assert set(_health(status).values()) <= {"READY", "NOT_CHECKED"}
