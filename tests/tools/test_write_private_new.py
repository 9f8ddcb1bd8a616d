"""write_private_new: a new 0600 file, written whole or not at all, never over an existing name."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sop_verified.tools.private_fs import write_private_new


def test_creates_a_0600_file_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_private_new(tmp_path / "f", b"data")
    finally:
        os.umask(old)
    assert (tmp_path / "f").read_bytes() == b"data"
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # no temporary file left


def test_never_replaces_an_existing_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"old")
    with pytest.raises(FileExistsError):
        write_private_new(tmp_path / "f", b"new")
    assert (tmp_path / "f").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_never_writes_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "target"
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(FileExistsError):
        write_private_new(tmp_path / "link", b"new")
    assert not target.exists()
