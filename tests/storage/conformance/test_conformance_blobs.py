"""Conformance: small blobs are kept once per stored name and dropped only when unused."""

from __future__ import annotations

from conformance_backends import ORIGIN, Opened
from conformance_entries import BLOB_SCOPE, blob_name, blob_part

from sop_verified.core.persistence import index_entries
from sop_verified.core.persistence.entries import tombstone_entry
from sop_verified.storage.ports import StorageBackend
from sop_verified.tools.signed_note import Signer


def _kept(backend: StorageBackend, stored: str, data: bytes) -> int:
    [got] = backend.log.append_parts([blob_part(stored, data)])
    assert not isinstance(got, Exception) and got[1] is not None
    return got[1].index


def test_a_blob_is_kept_once_and_dropped_only_when_no_live_object_uses_it(
    backend: StorageBackend, signer: Signer
) -> None:
    backend.log.open(signer=signer, origin=ORIGIN)
    backend.set_entry_indexer(index_entries)
    name = blob_name("a")
    first = _kept(backend, name, b"A")
    second = _kept(backend, name, b"A")  # the same content again
    assert backend.blobs.blob(BLOB_SCOPE, name) == b"A"
    assert backend.blobs.blob(BLOB_SCOPE, blob_name("z")) is None
    assert backend.blobs.drop_blob(BLOB_SCOPE, name) is False  # live objects use it
    for effect_index in (first, second):
        obj = backend.persist.object_at(effect_index)
        assert obj is not None
        backend.log.append(tombstone_entry(obj, rule="keep", time=3))
    assert backend.persist.by_stored(BLOB_SCOPE, name) is None
    assert backend.blobs.drop_blob(BLOB_SCOPE, name) is True
    assert backend.blobs.blob(BLOB_SCOPE, name) is None
    assert backend.blobs.drop_blob(BLOB_SCOPE, name) is False  # nothing left to drop


def test_blobs_survive_a_reopen(durable: Opened, signer: Signer) -> None:
    durable.backend.log.open(signer=signer, origin=ORIGIN)
    durable.backend.set_entry_indexer(index_entries)
    _kept(durable.backend, blob_name("c"), b"C")
    b = durable.reopen()
    assert b.blobs.blob(BLOB_SCOPE, blob_name("c")) == b"C"
