"""The in-memory store keeps the durable backends' rules: write-once, idempotent, append-only."""

from __future__ import annotations

import pytest

from sop_verified.errors import StorageError
from sop_verified.storage.memory import MemoryStore


def test_capabilities_are_write_once_by_id() -> None:
    store = MemoryStore()
    store.save_capability("cap-1", None, b"{}")
    with pytest.raises(StorageError, match="write-once"):
        store.save_capability("cap-1", None, b'{"other":1}')
    assert store.load_capabilities() == [("cap-1", None, b"{}")]


def test_capabilities_load_in_admission_order() -> None:
    store = MemoryStore()
    for i in (3, 1, 2):
        store.save_capability(f"cap-{i}", None, b"{}")
    assert [c[0] for c in store.load_capabilities()] == ["cap-3", "cap-1", "cap-2"]


def test_a_revocation_is_written_once() -> None:
    store = MemoryStore()
    store.save_revocation("cap-1", 10)
    with pytest.raises(StorageError, match="already recorded"):
        store.save_revocation("cap-1", 20)
    assert store.load_revocations() == {"cap-1": 10}


def test_injected_write_failure_changes_nothing() -> None:
    store = MemoryStore()
    store.save_capability("cap-1", None, b"{}")
    before = store.snapshot()
    store.fail_writes = True
    for write in (
        lambda: store.save_capability("cap-2", None, b"{}"),
        lambda: store.save_revocation("cap-1", 1),
        lambda: store.save_policy_set("sha256:x", b"{}", 1),
        lambda: store.append(b"entry"),
    ):
        with pytest.raises(StorageError):
            write()
    assert store.snapshot() == before


def test_active_policy_set_is_the_latest_activation() -> None:
    store = MemoryStore()
    assert store.load_active_policy_set() is None
    store.save_policy_set("sha256:a", b"A", 1)
    store.save_policy_set("sha256:b", b"B", 2)
    assert store.load_active_policy_set() == ("sha256:b", b"B")


def test_log_append_returns_consecutive_indexes() -> None:
    store = MemoryStore()
    assert [store.append(b"x"), store.append(b"y")] == [0, 1]
    assert store.log_size() == 2
    assert store.snapshot().log == (b"x", b"y")


def test_loaded_lists_are_copies() -> None:
    store = MemoryStore()
    store.save_capability("cap-1", None, b"{}")
    store.load_capabilities().clear()
    store.load_revocations()["cap-9"] = 1
    assert store.load_capabilities() == [("cap-1", None, b"{}")]
    assert store.load_revocations() == {}
