"""Conformance: a scope's stored bytes, whichever backend keeps them (files, rows, memory).

What the persistence controller relies on from ``StorageBackend.open_scope``:
bytes read back only with the digest expected, never more than the size
asked for; an exclusive write never overwrites; a name outside the grammar
is refused before anything is touched (INV-4); scopes do not see each
other's bytes; what is written survives a reopen (durable backends).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from conformance_backends import Opened

from sop_verified.errors import ConfinementError, IntegrityError, PersistenceError
from sop_verified.storage.ports import ScopeContent, StorageBackend

DATA = bytes(range(256)) * 1024 + b"tail"  # past 64 KiB: what the two-step path stores
HEX = hashlib.sha256(DATA).hexdigest()
CAS = f"sha256/{HEX[:2]}/{HEX}"


def _scope(backend: StorageBackend, directory: Path, name: str = "s") -> ScopeContent:
    return backend.open_scope(name, f"roots/{name}", directory / "scopes")


def test_written_bytes_are_read_back_verified(backend: StorageBackend, tmp_path: Path) -> None:
    s = _scope(backend, tmp_path)
    assert s.digest(CAS, max_bytes=len(DATA)) is None
    s.write(CAS, DATA, tag="7", exclusive=False)
    assert s.digest(CAS, max_bytes=len(DATA)) == HEX
    assert s.read(CAS, max_bytes=len(DATA), expected_hex=HEX) == DATA
    assert s.sweep_temps("sha256/" + HEX[:2]) == 0  # a completed write leaves nothing behind


def test_bytes_with_another_digest_are_never_returned(
    backend: StorageBackend, tmp_path: Path
) -> None:
    s = _scope(backend, tmp_path)
    s.write("doc@d3", DATA, tag="3", exclusive=True)
    other = hashlib.sha256(b"what the log says").hexdigest()
    with pytest.raises(IntegrityError, match=f"expected `sha256:{other}`"):
        s.read("doc@d3", max_bytes=len(DATA), expected_hex=other)


def test_more_bytes_than_asked_for_are_refused(backend: StorageBackend, tmp_path: Path) -> None:
    s = _scope(backend, tmp_path)
    s.write("big", DATA, tag="1", exclusive=True)
    for call in (
        lambda: s.read("big", max_bytes=len(DATA) - 1, expected_hex=HEX),
        lambda: s.digest("big", max_bytes=len(DATA) - 1),
    ):
        with pytest.raises(PersistenceError) as err:
            call()
        assert err.value.code == "too_large"


def test_nothing_stored_is_not_found(backend: StorageBackend, tmp_path: Path) -> None:
    s = _scope(backend, tmp_path)
    with pytest.raises(PersistenceError) as err:
        s.read("absent/x", max_bytes=10, expected_hex=HEX)
    assert err.value.code == "not_found"
    assert s.unlink("absent/x") is False


def test_an_exclusive_write_never_overwrites(backend: StorageBackend, tmp_path: Path) -> None:
    s = _scope(backend, tmp_path)
    s.write("verdict", b"first", tag="1", exclusive=True)
    with pytest.raises(PersistenceError) as err:
        s.write("verdict", b"second", tag="2", exclusive=True)
    assert err.value.code == "exists"
    first = hashlib.sha256(b"first").hexdigest()
    assert s.read("verdict", max_bytes=10, expected_hex=first) == b"first"
    s.write("verdict", b"again", tag="3", exclusive=False)  # a replacing write replaces
    assert s.digest("verdict", max_bytes=10) == hashlib.sha256(b"again").hexdigest()


@pytest.mark.parametrize(
    "rel", ["../escape", "a//b", "/abs", "a/./b", ".sop-tmp-1-x", "a\\b", "caf\u00e9", "x\x00"]
)
def test_a_name_outside_the_grammar_is_refused(
    backend: StorageBackend, tmp_path: Path, rel: str
) -> None:
    s = _scope(backend, tmp_path)
    for call in (
        lambda: s.write(rel, b"x", tag="1", exclusive=False),
        lambda: s.read(rel, max_bytes=1, expected_hex=HEX),
        lambda: s.digest(rel, max_bytes=1),
        lambda: s.unlink(rel),
    ):
        with pytest.raises(ConfinementError):  # spec: INV-4
            call()


def test_scopes_do_not_see_each_others_bytes(backend: StorageBackend, tmp_path: Path) -> None:
    one, two = _scope(backend, tmp_path, "one"), _scope(backend, tmp_path, "two")
    one.write("same/name", b"one's", tag="1", exclusive=True)
    assert two.digest("same/name", max_bytes=10) is None
    two.write("same/name", b"two's", tag="2", exclusive=True)  # not an overwrite of one's
    assert one.digest("same/name", max_bytes=10) == hashlib.sha256(b"one's").hexdigest()


def test_a_removed_name_is_gone(backend: StorageBackend, tmp_path: Path) -> None:
    s = _scope(backend, tmp_path)
    s.write("old@d1", b"old", tag="1", exclusive=True)
    assert s.unlink("old@d1") is True
    assert s.digest("old@d1", max_bytes=10) is None
    assert s.unlink("old@d1") is False


def test_stored_bytes_survive_a_reopen(durable: Opened, tmp_path: Path) -> None:
    s = _scope(durable.backend, tmp_path)
    s.write(CAS, DATA, tag="1", exclusive=True)
    s.close()
    again = _scope(durable.reopen(), tmp_path)
    assert again.read(CAS, max_bytes=len(DATA), expected_hex=HEX) == DATA
