"""Crash between decision and effect: boot repairs it (redo or logged abort), never a half-write.

Each crash test prepares a data directory, runs one persist in a child
process that SIGKILLs itself at a chosen point (``persistence_crash_child.py``),
checks the on-disk state the crash left, then boots SOP again and checks the
repair: the pending decision is closed by a ``persist.effect`` entry marked
``repaired`` (``written``/``unchanged`` when the complete file is there with
the bound digest, ``aborted`` otherwise), no temporary file is left, and no
visible file is half-written.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import sop_verified
from sop_verified.core.health import Health
from sop_verified.core.request import Permission
from sop_verified.nexus.sop import SOP
from sop_verified.storage.blobs import TEMP_PREFIX, ScopeDir

NOW = 1_800_000_000
CHILD = Path(__file__).with_name("persistence_crash_child.py")
SOURCE = Path(sop_verified.__file__).resolve().parents[1]  # the child imports this same tree
POLICY = """
[[policy]]
id = "all-protocols-persist"
effect = "permit"
principal = ["drac", "emp", "csp"]
action = ["artifact.persist", "verdict.record", "state.persist", "artifact.read"]
resource = ["artifacts/drac/**", "verdicts/emp/**", "state/csp/**"]
channel = "bridge"
"""
ROOTS = {"drac": "drac/artifacts", "emp": "emp/verdicts", "csp": "csp/state"}
CASES = {
    "drac": ("artifact.persist", "artifacts/drac/s1/out.bin"),
    "emp": ("verdict.record", "verdicts/emp/subject/claim"),
    "csp": ("state.persist", "state/csp/k"),
}
PAYLOAD = "crash-test payload"


def _prepare(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    data = tmp_path / "data"
    SOP.init(data)
    sop = SOP.boot(data, now=lambda: NOW)
    assert sop.health is Health.READY
    (tmp_path / "pol").mkdir()
    (tmp_path / "pol" / "policy.toml").write_text(POLICY)
    sop.activate_policy(tmp_path / "pol")
    actions = ["artifact.persist", "verdict.record", "state.persist", "artifact.read"]
    resources = ["artifacts/drac/**", "verdicts/emp/**", "state/csp/**"]
    tokens = {p: sop.admit(p, actions, resources, expires=NOW + 3600)[1] for p in CASES}
    sop.close()
    return data, tokens


def _crash(data: Path, token: str, point: str, principal: str) -> None:
    action, resource = CASES[principal]
    args = [str(data), token, point, principal, action, resource, PAYLOAD]
    result = subprocess.run(
        [sys.executable, str(CHILD), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(SOURCE)},
    )
    assert result.returncode == -9, (result.returncode, result.stderr[-2000:])


def _files(root: Path) -> dict[str, os.stat_result]:
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            out[str(path.relative_to(root))] = path.lstat()
    return out


def _effects(sop: SOP) -> list[dict[str, Any]]:
    assert sop.store is not None
    entries = [json.loads(p) for _, _, p in sop.store.log.log_entries()]
    return [e for e in entries if e.get("type") == "persist.effect"]


def _reboot(data: Path) -> SOP:
    sop = SOP.boot(data, now=lambda: NOW + 10)
    assert sop.health is Health.READY, sop.boot_report
    assert sop.store is not None and sop.store.persist.pending() == []
    return sop


def _read(sop: SOP, token: str, principal: str) -> bytes | None:
    _, resource = CASES[principal]
    request = {
        "request_id": "after-boot",
        "principal": principal,
        "action": "artifact.read",
        "resource": resource,
        "capability": token,
    }
    return sop.read(request).data


def _assert_no_temps(root: Path) -> None:
    assert not [f for f in _files(root) if Path(f).name.startswith(TEMP_PREFIX)]


CRASHES = [
    pytest.param("after_decision", "emp", "aborted", id="after_decision-write_once"),
    pytest.param("after_temp", "emp", "aborted", id="after_temp-write_once"),
    pytest.param("after_link", "emp", "written", id="after_link-write_once"),
    pytest.param("after_publish", "csp", "written", id="after_publish-versioned"),
    pytest.param("after_effect", "drac", None, id="after_effect-content_addressed"),
    pytest.param(
        "after_temp", "drac", "aborted", id="after_temp-content_addressed", marks=pytest.mark.slow
    ),
    pytest.param(
        "after_publish",
        "drac",
        "written",
        id="after_publish-content_addressed",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        "after_publish", "emp", "written", id="after_publish-write_once", marks=pytest.mark.slow
    ),
    pytest.param("after_link", "csp", "written", id="after_link-versioned", marks=pytest.mark.slow),
    pytest.param(
        "after_decision", "csp", "aborted", id="after_decision-versioned", marks=pytest.mark.slow
    ),
]


@pytest.mark.parametrize(("point", "principal", "repaired"), CRASHES)
def test_crash_between_decision_and_effect_is_repaired_at_boot(
    tmp_path: Path, point: str, principal: str, repaired: str | None
) -> None:
    data, tokens = _prepare(tmp_path)
    root = data / "scopes" / ROOTS[principal]
    _crash(data, tokens[principal], point, principal)
    left = _files(root)
    temps = [f for f in left if Path(f).name.startswith(TEMP_PREFIX)]
    finals = [f for f in left if not Path(f).name.startswith(TEMP_PREFIX)]
    if point == "after_temp":
        assert temps and not finals  # the crash really left a synced temporary file
    if point == "after_link":
        assert temps and finals and left[finals[0]].st_nlink == 2

    sop = _reboot(data)
    try:
        _assert_no_temps(root)
        effects = _effects(sop)
        assert len(effects) == 1
        [effect] = effects
        if repaired is None:
            assert "repaired" not in effect and sop.recovery is not None
            assert sop.recovery.redone == sop.recovery.aborted == 0
        else:
            assert (effect["outcome"], effect.get("repaired")) == (repaired, True)
        finals_now = _files(root)
        if (repaired or effect["outcome"]) == "aborted":
            assert finals_now == {}  # nothing visible, nothing half-written
            assert effect["reasons"][0]["code"] == "effect_incomplete"
            assert _read(sop, tokens[principal], principal) is None
        else:
            [(name, st)] = finals_now.items()
            assert st.st_nlink == 1 and stat.S_ISREG(st.st_mode)
            assert (root / name).read_bytes() == PAYLOAD.encode()
            expected = "sha256:" + hashlib.sha256(PAYLOAD.encode()).hexdigest()
            assert effect["digest"] == expected
            assert _read(sop, tokens[principal], principal) == PAYLOAD.encode()
        assert sop.store is not None
        sop.store.log.verify_tail()
    finally:
        sop.close()


@pytest.mark.parametrize("point", ["linked_in_commit", "linked_after_commit"])
def test_crash_in_a_linked_write_leaves_all_or_nothing(tmp_path: Path, point: str) -> None:
    """A small content-addressed write commits decision, effect and bytes together (ADR 0007)."""
    data, tokens = _prepare(tmp_path)
    root = data / "scopes" / ROOTS["drac"]
    _crash(data, tokens["drac"], point, "drac")
    sop = _reboot(data)
    try:
        assert sop.store is not None and sop.recovery is not None
        assert sop.recovery.redone == sop.recovery.aborted == 0  # nothing was left pending
        entries = [json.loads(p) for _, _, p in sop.store.log.log_entries()]
        decisions = [
            i
            for i, e in enumerate(entries)
            if e.get("type") == "decision" and e.get("request", {}).get("request_id") == "crash-1"
        ]
        effects = _effects(sop)
        assert _files(root) == {}  # a small blob never becomes a file
        if point == "linked_in_commit":
            assert decisions == [] and effects == []
            assert _read(sop, tokens["drac"], "drac") is None
        else:
            [decision] = decisions
            [effect] = effects
            assert (effect["outcome"], effect["decision_index"]) == ("written", decision)
            assert "repaired" not in effect
            assert _read(sop, tokens["drac"], "drac") == PAYLOAD.encode()
        sop.store.log.verify_tail()
    finally:
        sop.close()


def test_second_boot_after_repair_changes_nothing(tmp_path: Path) -> None:
    data, tokens = _prepare(tmp_path)
    _crash(data, tokens["emp"], "after_link", "emp")
    _reboot(data).close()
    sop = _reboot(data)
    try:
        assert sop.recovery is not None and sop.recovery.redone == sop.recovery.aborted == 0
        assert len(_effects(sop)) == 1
    finally:
        sop.close()


def test_allow_without_bound_content_is_aborted_at_boot(tmp_path: Path) -> None:
    data, tokens = _prepare(tmp_path)
    sop = _reboot(data)
    action, resource = CASES["drac"]
    d = sop.submit(
        {
            "request_id": "no-data",
            "principal": "drac",
            "action": action,
            "resource": resource,
            "capability": tokens["drac"],
        }
    )
    assert d.effect is Permission.ALLOW  # a bridge ALLOW with no bytes: it authorises nothing yet
    sop.close()
    sop = _reboot(data)
    try:
        [effect] = _effects(sop)
        assert (effect["outcome"], effect["decision_index"]) == ("aborted", d.log_index)
        assert effect["reasons"][0]["code"] == "no_content"
    finally:
        sop.close()


def test_tombstoned_file_left_by_a_crash_is_removed_at_boot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, tokens = _prepare(tmp_path)
    sop = _reboot(data)
    action, resource = CASES["csp"]
    stored = []
    for i in range(18):  # csp-state keeps 16 versions
        req = {
            "request_id": f"v{i}",
            "principal": "csp",
            "action": action,
            "resource": resource,
            "capability": tokens["csp"],
        }
        stored.append(sop.persist(req, f"v{i}".encode()).write.stored)

    def crash(self: ScopeDir, rel: str) -> bool:
        raise KeyboardInterrupt  # the process dies after logging the tombstone

    monkeypatch.setattr(ScopeDir, "unlink", crash)
    with pytest.raises(KeyboardInterrupt):
        sop.apply_retention()
    root = data / "scopes" / ROOTS["csp"]
    assert (root / stored[0]).exists()
    sop.close()
    monkeypatch.undo()
    sop = _reboot(data)
    try:
        assert sop.recovery is not None and sop.recovery.purged == 2
        assert not (root / stored[0]).exists() and not (root / stored[1]).exists()
        assert (root / stored[2]).exists()
    finally:
        sop.close()


def test_symlinked_scope_root_fails_boot(tmp_path: Path) -> None:
    data, _ = _prepare(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    root = data / "scopes" / ROOTS["emp"]
    root.rmdir()
    os.symlink(outside, root)
    sop = SOP.boot(data, now=lambda: NOW)
    try:
        assert sop.health is Health.FAILED
        service = sop.registry.get("persistence")
        assert service.health is Health.FAILED and "symlink" in service.detail
        assert sop.persist({"request_id": "x"}, b"x").effect is Permission.DENY
    finally:
        sop.close()
    assert list(outside.iterdir()) == []
