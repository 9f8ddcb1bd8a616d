"""Conformance: the persistence index derived from the log (pending, versions, tombstones)."""

from __future__ import annotations

import pytest
from conformance_backends import ORIGIN, Opened
from conformance_entries import SCOPE, decision, effect

from sop_verified.core.persistence import index_entries
from sop_verified.core.persistence.entries import tombstone_entry
from sop_verified.errors import PendingClosedError
from sop_verified.storage.ports import StorageBackend
from sop_verified.tools.signed_note import Signer


def _follow(backend: StorageBackend, signer: Signer) -> None:
    backend.log.open(signer=signer, origin=ORIGIN)
    backend.set_entry_indexer(index_entries)


def _write(backend: StorageBackend, name: str = "k", stored: str = "k@d0") -> int:
    d = backend.log.append(decision())
    return backend.log.append(effect(d, name=name, stored=stored))


def test_an_allow_is_pending_until_its_effect(backend: StorageBackend, signer: Signer) -> None:
    _follow(backend, signer)
    d = backend.log.append(decision())
    backend.log.append(decision(effect="DENY"))
    backend.log.append(decision(action="artifact.read"))
    assert [p.decision_index for p in backend.persist.pending()] == [d]
    pending = backend.persist.pending_decision(d)
    assert pending is not None and b"state.persist" in pending.request
    e = backend.log.append(effect(d))
    assert backend.persist.pending() == [] and backend.persist.pending_decision(d) is None
    record = backend.persist.latest(SCOPE, "k")
    assert record is not None
    assert (record.effect_index, record.decision_index, record.version) == (e, d, 1)
    assert backend.persist.object_at(e) == record
    assert backend.persist.by_stored(SCOPE, "k@d0") == record
    assert backend.persist.written_version(e) == 1
    assert backend.persist.written_version(e + 1) is None
    assert backend.persist.indexed_to() == backend.log.log_size()


def test_versions_count_per_name_and_objects_list_newest_first(
    backend: StorageBackend, signer: Signer
) -> None:
    _follow(backend, signer)
    e1 = _write(backend, "a", "a@1")
    e2 = _write(backend, "a", "a@2")
    e3 = _write(backend, "b", "b@1")
    index = backend.persist
    assert [index.written_version(e) for e in (e1, e2, e3)] == [1, 2, 1]
    assert [(o.name, o.version) for o in index.objects(SCOPE)] == [("a", 2), ("a", 1), ("b", 1)]
    assert [o.effect_index for o in index.objects(SCOPE, "a")] == [e2, e1]
    one = index.version(SCOPE, "a", 1)
    assert one is not None and one.effect_index == e1
    assert index.version(SCOPE, "a", 3) is None
    assert index.objects("other-scope") == []


def test_a_tombstone_hides_the_object_and_queues_its_purge(
    backend: StorageBackend, signer: Signer
) -> None:
    _follow(backend, signer)
    e1 = _write(backend, "a", "a@1")
    e2 = _write(backend, "a", "a@2")
    old = backend.persist.version(SCOPE, "a", 1)
    assert old is not None
    t = backend.log.append(tombstone_entry(old, rule="keep", time=3))
    assert backend.persist.object_at(e1) is None
    latest = backend.persist.latest(SCOPE, "a")
    assert latest is not None and latest.effect_index == e2
    assert [o.effect_index for o in backend.persist.objects(SCOPE)] == [e2]
    [purge] = backend.persist.purges()
    assert (purge.tombstone_index, purge.scope, purge.stored) == (t, SCOPE, "a@1")
    backend.persist.purged(t)
    assert backend.persist.purges() == []
    backend.log.append(tombstone_entry(old, rule="keep", time=4))  # again: nothing new
    assert [p.stored for p in backend.persist.purges()] == ["a@1"]  # queued again, as a file


def test_the_index_catches_up_on_entries_appended_before_it_followed(
    backend: StorageBackend, signer: Signer
) -> None:
    backend.log.open(signer=signer, origin=ORIGIN)
    e = _write(backend)
    d2 = backend.log.append(decision())
    assert backend.persist.pending() == [] and backend.persist.indexed_to() == 0
    backend.set_entry_indexer(index_entries)
    assert [p.decision_index for p in backend.persist.pending()] == [d2]
    assert backend.persist.written_version(e) == 1
    assert backend.persist.indexed_to() == backend.log.log_size()
    backend.set_entry_indexer(index_entries)  # following again changes nothing
    assert [p.decision_index for p in backend.persist.pending()] == [d2]


def test_the_index_survives_a_reopen_and_keeps_counting(durable: Opened, signer: Signer) -> None:
    _follow(durable.backend, signer)
    _write(durable.backend)
    d = durable.backend.log.append(decision())
    b = durable.reopen()
    _follow(b, signer)
    assert [p.decision_index for p in b.persist.pending()] == [d]
    e = b.log.append(effect(d))
    assert b.persist.written_version(e) == 2
    assert b.persist.pending() == []


def test_a_decision_has_one_effect_a_second_batch_closing_it_writes_nothing(
    backend: StorageBackend, signer: Signer
) -> None:
    # INV-9 on a shared log: a booting replica's repair and the live replica may both close
    # one decision; whoever deletes the pending row first records its one effect
    _follow(backend, signer)
    d = backend.log.append(decision())
    first = backend.log.append(effect(d))
    size = backend.log.log_size()
    with pytest.raises(PendingClosedError, match=rf"log indexes \[{d}\], 1 no longer pending"):
        backend.log.append(effect(d, name="again", stored="again@d0"))
    assert backend.log.log_size() == size  # the whole batch rolled back
    assert backend.persist.latest(SCOPE, "again") is None
    assert backend.persist.latest(SCOPE, "k").effect_index == first  # type: ignore[union-attr]
    assert backend.log.append(decision(effect="DENY")) == size  # and the log goes on
