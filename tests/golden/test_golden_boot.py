"""Golden artefacts: the boot manifest and the first checkpoint, byte for byte (INV-8).

Same configuration, same keys, same clock: the same manifest and the same signed
checkpoint, on every machine and every run. Regenerate after an intended change
with ``SOP_REGENERATE_GOLDEN=1 python3 -m pytest tests/golden`` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from golden_dir import GOLDEN, NOW, VERSIONS, make_golden_dir

from sop_verified.core.health import Health
from sop_verified.nexus import boot
from sop_verified.nexus.sop import MANIFEST_NAME, SOP

MANIFEST = GOLDEN / "boot-manifest.json"
CHECKPOINT = GOLDEN / "checkpoint.txt"


def _boot(data: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, str]:
    monkeypatch.setattr(boot, "versions", lambda: dict(VERSIONS))
    make_golden_dir(data)
    with SOP.boot(data, now=lambda: NOW) as sop:
        assert sop.health is Health.READY, sop.boot_report.detail
        note = sop.log.checkpoint_note
        assert note is not None
        return (data / MANIFEST_NAME).read_bytes(), note


def test_boot_manifest_and_checkpoint_match_the_golden_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest, checkpoint = _boot(tmp_path / "d", monkeypatch)
    if os.environ.get("SOP_REGENERATE_GOLDEN") == "1":
        MANIFEST.write_bytes(manifest)
        CHECKPOINT.write_text(checkpoint, encoding="utf-8")
    assert manifest == MANIFEST.read_bytes()
    assert checkpoint == CHECKPOINT.read_text(encoding="utf-8")


def test_two_boots_in_two_directories_write_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _boot(tmp_path / "a", monkeypatch)
    assert _boot(tmp_path / "b", monkeypatch) == first
