"""docs/API.md's example runs as shown, through the public API only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import sop_verified

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "quickstart.py"


def test_api_doc_shows_the_example_unchanged() -> None:
    doc = (ROOT / "docs" / "API.md").read_text(encoding="utf-8")
    assert "```python\n" + EXAMPLE.read_text(encoding="utf-8") + "```" in doc


def test_api_example_runs_and_verifies_its_receipt_offline() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "decided: ALLOW" in done.stdout
    assert "is in the log signed by sop.local/log" in done.stdout


def test_public_names_resolve_and_unknown_names_fail() -> None:
    for name in sop_verified.__all__:
        assert getattr(sop_verified, name) is not None
    with pytest.raises(AttributeError, match="NoSuchName"):
        sop_verified.NoSuchName  # type: ignore[attr-defined]  # noqa: B018  # the access is the test


def test_sop_is_a_context_manager_that_closes(tmp_path: Path) -> None:
    sop_verified.SOP.init(tmp_path / "d")
    with sop_verified.SOP.boot(tmp_path / "d") as sop:
        assert sop.health is sop_verified.Health.READY
    # closed: the writer no longer takes work
    with pytest.raises(RuntimeError):
        sop.services.writer.submit(lambda: None)
