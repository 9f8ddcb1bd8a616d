"""Conformance: a batch's unit of work commits with the batch, or nothing does."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from conformance_backends import ORIGIN
from conformance_entries import BLOB_SCOPE, blob_name, blob_part, decision

from sop_verified.core.persistence import index_entries
from sop_verified.errors import StorageError
from sop_verified.storage.persist_index import IndexOps, PendingDecision
from sop_verified.storage.ports import StorageBackend
from sop_verified.storage.unit_of_work import KeptBlob, UnitOfWork
from sop_verified.tools import merkle
from sop_verified.tools.signed_note import Signer
from sop_verified.tools.tlog_store import Batch


def _batch(start: int, *payloads: bytes) -> Batch:
    entries = [(start + k, merkle.leaf_hash(p), p) for k, p in enumerate(payloads)]
    return Batch(start, entries, [], None)


def _state(backend: StorageBackend) -> tuple[object, ...]:
    """Everything a failed append must leave as it was."""
    size = backend.log_store.log_tail()[0]
    return (
        size,
        backend.log_store.read_entries(0, size + 5),
        backend.persist.indexed_to(),
        backend.persist.pending(),
        backend.persist.objects(BLOB_SCOPE),
        backend.persist.blob(BLOB_SCOPE, blob_name("a")),
    )


def test_an_effect_and_its_blob_commit_with_the_entries(
    backend: StorageBackend, signer: Signer
) -> None:
    backend.log.open(signer=signer, origin=ORIGIN)
    backend.set_entry_indexer(index_entries)
    [got] = backend.log.append_parts([blob_part(blob_name("a"), b"A")])
    assert not isinstance(got, Exception) and got[1] is not None
    effect_index = got[1].index
    record = backend.persist.object_at(effect_index)
    assert record is not None and record.stored == blob_name("a")
    assert backend.persist.blob(BLOB_SCOPE, blob_name("a")) == b"A"
    assert backend.blobs.blob(BLOB_SCOPE, blob_name("a")) == b"A"
    assert backend.persist.indexed_to() == backend.log.log_size() == 2


def test_a_blob_no_effect_records_fails_the_whole_batch(
    backend: StorageBackend, signer: Signer
) -> None:
    backend.log.open(signer=signer, origin=ORIGIN)
    backend.set_entry_indexer(index_entries)
    backend.log.append(decision())
    before = _state(backend)
    stray = blob_part(blob_name("b"), b"B", attached=blob_name("a"))
    with pytest.raises(StorageError, match="has no effect in its batch"):
        backend.log.append_parts([stray])
    assert _state(backend) == before
    assert backend.log.append(decision()) == 1  # the log goes on where it was


def test_a_failing_indexer_fails_the_append(backend: StorageBackend, signer: Signer) -> None:
    backend.log.open(signer=signer, origin=ORIGIN)

    def broken(entries: Sequence[tuple[int, bytes]]) -> IndexOps:
        raise StorageError("indexer broke")

    backend.set_entry_indexer(broken)  # nothing to catch up on: not called yet
    with pytest.raises(StorageError):
        backend.log.append(decision())
    assert backend.log_store.log_tail() == (0, None)
    assert backend.persist.indexed_to() == 0


def test_a_unit_is_applied_with_its_batch(backend: StorageBackend) -> None:
    backend.log_store.commit(_batch(0, b"zero"), None)  # no unit: the index stays
    assert backend.persist.indexed_to() == 0
    backend.log_store.follow(index_entries)
    unit = UnitOfWork(
        indexed_to=2,
        index=IndexOps(pending=(PendingDecision(1, b"request"),)),
        blobs=(),
    )
    backend.log_store.commit(_batch(1, b"one"), unit)
    assert backend.persist.indexed_to() == 2
    assert backend.persist.pending() == [PendingDecision(1, b"request")]
    assert [p for _, _, p in backend.log_store.read_entries(0, 2)] == [b"zero", b"one"]


def test_nothing_of_the_unit_is_applied_when_the_append_fails(backend: StorageBackend) -> None:
    backend.log_store.commit(_batch(0, b"zero"), None)
    before = _state(backend)
    unit = UnitOfWork(
        indexed_to=1,
        index=IndexOps(pending=(PendingDecision(0, b"request"),)),
        blobs=(KeptBlob(0, BLOB_SCOPE, blob_name("a"), b"A"),),
    )
    with pytest.raises(StorageError):
        backend.log_store.commit(_batch(0, b"again"), unit)  # index 0 is taken
    assert _state(backend) == before


def test_nothing_is_appended_when_the_unit_cannot_be_applied(backend: StorageBackend) -> None:
    backend.log_store.commit(_batch(0, b"zero"), None)  # the index stays at 0, nothing follows
    before = _state(backend)
    unit = UnitOfWork(indexed_to=2, index=IndexOps(pending=(PendingDecision(1, b"r"),)))
    with pytest.raises(StorageError, match="index"):
        backend.log_store.commit(_batch(1, b"one"), unit)  # the index is behind, no indexer
    assert _state(backend) == before
