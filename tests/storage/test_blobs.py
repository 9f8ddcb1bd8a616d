"""The file layer of a scope: durable writes that leave no temporary file, verified reads."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

import sop_verified.storage.blobs as blobs
from sop_verified.errors import ConfinementError, IntegrityError, PersistenceError, StorageError
from sop_verified.storage.blobs import TEMP_PREFIX, ScopeDir


@pytest.fixture
def scope(tmp_path: Path) -> Any:
    (tmp_path / "scopes").mkdir()
    root = ScopeDir(tmp_path / "scopes", "p/root")
    yield root
    root.close()


def _hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _names(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_write_publishes_the_bytes_and_leaves_no_temporary_file(scope: ScopeDir) -> None:
    scope.write("a/b/c.bin", b"data", tag="7", exclusive=True)
    assert _names(scope.path) == ["a", "a/b", "a/b/c.bin"]
    assert scope.read("a/b/c.bin", max_bytes=4, expected_hex=_hex(b"data")) == b"data"
    assert oct((scope.path / "a/b/c.bin").stat().st_mode & 0o777) == "0o600"


def test_exclusive_write_never_overwrites(scope: ScopeDir) -> None:
    scope.write("x", b"first", tag="1", exclusive=True)
    with pytest.raises(PersistenceError) as caught:
        scope.write("x", b"second", tag="2", exclusive=True)
    assert caught.value.code == "exists"
    assert (scope.path / "x").read_bytes() == b"first"
    assert _names(scope.path) == ["x"]


def test_replacing_write_swaps_atomically(scope: ScopeDir) -> None:
    scope.write("x", b"first", tag="1", exclusive=False)
    scope.write("x", b"second", tag="2", exclusive=False)
    assert (scope.path / "x").read_bytes() == b"second"
    assert _names(scope.path) == ["x"]


def test_failed_write_leaves_nothing(scope: ScopeDir, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)  # only for the duration of this write
    with pytest.raises(StorageError, match="No space left"):
        scope.write("d/x", b"data", tag="3", exclusive=True)
    assert _names(scope.path) == ["d"]


def test_failed_publish_removes_the_temporary_file(
    scope: ScopeDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_a: Any, **_k: Any) -> None:
        raise StorageError("publish failed")

    monkeypatch.setattr(blobs, "_publish_exclusive", broken)
    with pytest.raises(StorageError):
        scope.write("x", b"data", tag="4", exclusive=True)
    assert _names(scope.path) == []


def test_read_verifies_the_digest_and_the_size(scope: ScopeDir) -> None:
    scope.write("x", b"data", tag="1", exclusive=True)
    with pytest.raises(IntegrityError, match="expected `sha256:"):
        scope.read("x", max_bytes=10, expected_hex=_hex(b"other"))
    with pytest.raises(PersistenceError) as caught:
        scope.read("x", max_bytes=3, expected_hex=_hex(b"data"))
    assert caught.value.code == "too_large"
    with pytest.raises(PersistenceError) as missing:
        scope.read("nope/x", max_bytes=3, expected_hex=_hex(b""))
    assert missing.value.code == "not_found"


def test_digest_of_a_missing_file_is_none(scope: ScopeDir) -> None:
    assert scope.digest("a/b", max_bytes=10) is None
    scope.write("a/b", b"z", tag="1", exclusive=True)
    assert scope.digest("a/b", max_bytes=10) == _hex(b"z")


def test_sweep_removes_only_the_tagged_temporary_files(scope: ScopeDir) -> None:
    scope.write("d/keep", b"k", tag="1", exclusive=True)
    for name in (f"{TEMP_PREFIX}5-aa", f"{TEMP_PREFIX}5-bb", f"{TEMP_PREFIX}6-cc"):
        (scope.path / "d" / name).write_bytes(b"partial")
    assert scope.sweep_temps("d", tag="5") == 2
    assert _names(scope.path / "d") == [f"{TEMP_PREFIX}6-cc", "keep"]
    assert scope.sweep_temps("d") == 1
    assert scope.sweep_temps("missing") == 0


def test_unlink_removes_a_name_and_never_follows_a_symlink(scope: ScopeDir, tmp_path: Path) -> None:
    target = tmp_path / "outside.txt"
    target.write_bytes(b"keep")
    os.symlink(target, scope.path / "link")
    assert scope.unlink("link") is True
    assert target.read_bytes() == b"keep"
    assert scope.unlink("link") is False


def test_scope_root_through_a_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "scopes").mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "scopes" / "p")
    with pytest.raises(ConfinementError) as caught:
        ScopeDir(tmp_path / "scopes", "p/root")
    assert caught.value.code == "symlink"
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_closed_scope_refuses_everything(tmp_path: Path) -> None:
    (tmp_path / "scopes").mkdir()
    root = ScopeDir(tmp_path / "scopes", "r")
    root.close()
    with pytest.raises(StorageError, match="closed"):
        root.write("x", b"x", tag="1", exclusive=True)
