"""The persistence index follows the log in the log's own transaction, and catches up once."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from sop_verified.core.persistence import index_entries
from sop_verified.core.persistence.entries import EffectOutcome, effect_entry
from sop_verified.errors import StorageError
from sop_verified.storage.entry_log import UnsignedLogWarning
from sop_verified.storage.persist_index import IndexOps
from sop_verified.storage.sqlite import SQLiteBackend
from sop_verified.tools.canonical import canonical_json
from sop_verified.tools.tlog_store import LinkedPart


def _open(path: Path) -> SQLiteBackend:
    """A backend with its log opened unsigned (explicitly: these tests need no checkpoints)."""
    store = SQLiteBackend.open(path)
    with pytest.warns(UnsignedLogWarning):
        store.log.unsafe_open_unsigned()
    return store


DIGEST = "sha256:" + "a" * 64
REQUEST = {
    "request_id": "r-1",
    "principal": "csp",
    "action": "state.persist",
    "resource": "state/csp/k",
    "channel": "bridge",
    "context": {"size_bytes": 1},
    "obligations": [],
    "content_digest": DIGEST,
}


def _decision(effect: str = "ALLOW", action: str = "state.persist") -> bytes:
    return canonical_json(
        {"type": "decision", "effect": effect, "time": 1, "request": {**REQUEST, "action": action}}
    )


def _effect(
    decision_index: int,
    *,
    scope: str = "csp-state",
    name: str = "k",
    stored: str = "k@d0",
    digest: str = DIGEST,
    size: int = 1,
) -> bytes:
    return effect_entry(
        op="write",
        outcome=EffectOutcome.WRITTEN,
        time=2,
        decision_index=decision_index,
        request_id="r-1",
        scope=scope,
        name=name,
        stored=stored,
        digest=digest,
        size=size,
    )


def test_allow_persist_decision_is_pending_until_its_effect(tmp_path: Path) -> None:
    store = _open(tmp_path / "sop.db")
    store.set_entry_indexer(index_entries)
    d = store.log.append(_decision())
    store.log.append(_decision(effect="DENY"))
    store.log.append(_decision(action="artifact.read"))
    assert [p.decision_index for p in store.persist.pending()] == [d]
    e = store.log.append(_effect(d))
    assert store.persist.pending() == []
    record = store.persist.latest("csp-state", "k")
    assert record is not None and (record.effect_index, record.version) == (e, 1)
    store.close()


def test_index_catches_up_on_entries_appended_without_it(tmp_path: Path) -> None:
    store = _open(tmp_path / "sop.db")
    d = store.log.append(_decision())
    store.log.append(_effect(d))
    d2 = store.log.append(_decision())
    assert store.persist.pending() == []  # nothing indexed yet
    store.set_entry_indexer(index_entries)
    assert [p.decision_index for p in store.persist.pending()] == [d2]
    assert store.persist.latest("csp-state", "k") is not None
    store.close()


def test_a_failing_indexer_fails_the_batch_closed(tmp_path: Path) -> None:
    store = _open(tmp_path / "sop.db")

    def broken(entries: Sequence[tuple[int, bytes]]) -> IndexOps:
        raise StorageError("indexer broke")

    store.set_entry_indexer(broken)  # nothing to catch up on: not called yet
    with pytest.raises(StorageError):
        store.log.append(_decision())
    assert store.log.log_size() == 0  # the entry was not acknowledged, nor committed
    store.close()


def test_effect_and_tombstone_rows_are_insert_only(tmp_path: Path) -> None:
    store = _open(tmp_path / "sop.db")
    store.set_entry_indexer(index_entries)
    store.log.append(_effect(store.log.append(_decision())))
    with pytest.raises(StorageError, match="insert-only"), store._db.tx() as db:
        db.execute("UPDATE persist_effects SET digest = 'x'")
    with pytest.raises(StorageError, match="insert-only"), store._db.tx() as db:
        db.execute("DELETE FROM persist_effects")
    store.close()


def _versions(store: SQLiteBackend) -> list[int]:
    return [o.version for o in reversed(store.persist.objects("csp-state", "k"))]


def test_versions_keep_counting_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "sop.db"
    store = _open(path)
    store.set_entry_indexer(index_entries)
    for _ in range(3):
        store.log.append(_effect(store.log.append(_decision())))
    assert _versions(store) == [1, 2, 3]
    store.close()
    store = _open(path)  # reopened: the counter is read back
    store.set_entry_indexer(index_entries)
    store.log.append(_effect(store.log.append(_decision())))
    batch = [_decision(), _effect(store.log.log_size())]  # decision and effect in one batch
    store.log.opened.append_many(batch)
    assert _versions(store) == [1, 2, 3, 4, 5]
    store.close()


def test_written_version_is_answered_after_commit_and_only_for_live_objects(
    tmp_path: Path,
) -> None:
    store = _open(tmp_path / "sop.db")
    store.set_entry_indexer(index_entries)
    e = store.log.append(_effect(store.log.append(_decision())))
    assert store.persist._recent == {e: 1}  # noted once the batch committed
    assert store.persist.written_version(e) == 1
    assert store.persist._recent == {}  # asked once, then from the database
    assert store.persist.written_version(e) == 1
    assert store.persist.written_version(e + 1) is None  # no such effect
    store.close()


# ---- small blobs kept in the database (ADR 0007, keyed by effect index: ADR 0009) -----------
def _blob_effect(decision_index: int, stored: str, data: bytes) -> bytes:
    digest = "sha256:" + stored.rsplit("/", 1)[-1]
    size, name = len(data), f"n-{decision_index}"
    return _effect(
        decision_index, scope="drac-artifacts", name=name, stored=stored, digest=digest, size=size
    )


def _linked(store: SQLiteBackend, stored: str, data: bytes) -> int:
    """Append a decision, its effect and the blob in one batch; return the effect's index."""
    part = LinkedPart(
        _decision(),
        lambda at: _blob_effect(at, stored, data),
        (("drac-artifacts", stored, data),),
    )
    [got] = store.log.append_parts([part])
    assert not isinstance(got, Exception)
    assert got[1] is not None
    return got[1].index


def _inline_rows(store: SQLiteBackend) -> list[tuple[int, bytes]]:
    with store._db.tx() as db:
        return [
            (int(r[0]), bytes(r[1]))
            for r in db.execute("SELECT effect_index, data FROM persist_inline ORDER BY 1")
        ]


def test_a_small_blob_is_kept_under_its_effect_index_once_per_stored_name(tmp_path: Path) -> None:
    store = _open(tmp_path / "sop.db")
    store.set_entry_indexer(index_entries)
    a = _linked(store, "sha256/aa/" + "a" * 64, b"A")
    _linked(store, "sha256/aa/" + "a" * 64, b"A")  # the same content again: no second row
    b = _linked(store, "sha256/bb/" + "b" * 64, b"B")
    assert _inline_rows(store) == [(a, b"A"), (b, b"B")]
    assert store.persist.blob("drac-artifacts", "sha256/bb/" + "b" * 64) == b"B"
    with store._db.tx() as db:  # an integer key that grows with the log: no index at a digest
        indexes = db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'persist_inline'"
        ).fetchall()
    assert indexes == []
    store.close()


def test_a_blob_no_effect_of_its_batch_records_fails_the_batch_closed(tmp_path: Path) -> None:
    store = _open(tmp_path / "sop.db")
    store.set_entry_indexer(index_entries)
    stray = LinkedPart(
        _decision(),
        lambda at: _blob_effect(at, "sha256/aa/" + "a" * 64, b"A"),
        (("drac-artifacts", "sha256/cc/" + "c" * 64, b"C"),),  # not the effect's blob
    )
    with pytest.raises(StorageError, match="has no effect in its batch"):
        store.log.append_parts([stray])
    assert store.log.log_size() == 0 and _inline_rows(store) == []
    store.close()
