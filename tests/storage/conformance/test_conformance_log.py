"""Conformance: the log role (ordering, receipts, linked parts, signing, errors, durability)."""

from __future__ import annotations

import threading

import pytest
from conformance_backends import ORIGIN, Opened

from sop_verified.errors import StorageError, VerificationError
from sop_verified.storage.entry_log import UnsignedLogWarning
from sop_verified.storage.ports import StorageBackend
from sop_verified.tools import merkle
from sop_verified.tools.signed_note import Signer, generate
from sop_verified.tools.tlog_store import LinkedPart


def test_nothing_is_appended_before_the_log_is_opened(backend: StorageBackend) -> None:
    for call in (
        lambda: backend.log.append(b"x"),
        lambda: backend.log.append_receipt(b"x"),
        backend.log.log_size,
        lambda: backend.log.opened,
    ):
        with pytest.raises(StorageError, match="not open"):
            call()
    assert backend.log_store.log_tail() == (0, None)


def test_opening_without_a_key_is_explicit_and_warns_every_time(backend: StorageBackend) -> None:
    for _ in range(2):
        with pytest.warns(UnsignedLogWarning, match="WITHOUT a checkpoint key"):
            backend.log.unsafe_open_unsigned(origin=ORIGIN)
    assert backend.log.append_receipt(b"x").checkpoint is None  # nothing signed


def test_appends_are_ordered_gap_free_and_read_back(
    backend: StorageBackend, signer: Signer
) -> None:
    backend.log.open(signer=signer, origin=ORIGIN)
    payloads = [b"entry-%d" % i for i in range(7)]
    assert [backend.log.append(p) for p in payloads[:3]] == [0, 1, 2]
    receipts = [backend.log.append_receipt(p) for p in payloads[3:]]
    assert [r.index for r in receipts] == [3, 4, 5, 6]
    assert all(r.checkpoint is not None and r.tree_size > r.index for r in receipts)
    assert backend.log.log_size() == 7
    rows = backend.log.log_entries()
    assert [(i, p) for i, _, p in rows] == list(enumerate(payloads))
    assert all(leaf == merkle.leaf_hash(p) for _, leaf, p in rows)
    assert [p for _, _, p in backend.log.log_entries(2, 4)] == payloads[2:4]
    assert backend.log.log_entries(7) == []
    backend.log.verify_tail()


def test_linked_parts_are_appended_together_and_in_order(
    backend: StorageBackend, signer: Signer
) -> None:
    backend.log.open(signer=signer, origin=ORIGIN)
    backend.log.append(b"before")
    parts = [LinkedPart(b"first", lambda at: b"then %d" % at), LinkedPart(b"alone")]
    got = backend.log.append_parts(parts)
    assert not any(isinstance(g, Exception) for g in got)
    (a, linked), (b, none) = got  # type: ignore[misc]
    assert (a.index, linked.index, none) == (1, 2, None)
    assert b.index == 3
    assert [p for _, _, p in backend.log.log_entries(1)] == [b"first", b"then 1", b"alone"]


def test_concurrent_appends_are_unique_and_gap_free(
    backend: StorageBackend, signer: Signer
) -> None:
    backend.log.open(signer=signer, origin=ORIGIN)
    got: list[int] = []
    lock = threading.Lock()

    def work(w: int) -> None:
        for i in range(25):
            index = backend.log.append(b"%d-%d" % (w, i))
            with lock:
                got.append(index)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(200))
    assert [i for i, _, _ in backend.log.log_entries()] == list(range(200))


def test_a_signed_log_refuses_an_unsigned_writer(backend: StorageBackend, signer: Signer) -> None:
    backend.log.open(signer=signer, origin=ORIGIN)
    backend.log.append(b"signed")
    with pytest.warns(UnsignedLogWarning):
        backend.log.unsafe_open_unsigned(origin=ORIGIN, trusted=(signer.verifier(),))
    with pytest.raises(StorageError, match="signed"):
        backend.log.append(b"unsigned")
    assert backend.log.log_size() == 1


def test_a_log_signed_by_another_key_does_not_open(backend: StorageBackend, signer: Signer) -> None:
    backend.log.open(signer=signer, origin=ORIGIN)
    backend.log.append(b"signed")
    other = Signer.from_string(generate(ORIGIN)[0])
    with pytest.raises(VerificationError):
        backend.log.open(signer=other, origin=ORIGIN)


def test_the_log_survives_a_reopen(durable: Opened, signer: Signer) -> None:
    durable.backend.log.open(signer=signer, origin=ORIGIN)
    for i in range(5):
        durable.backend.log.append(b"%d" % i)
    root = durable.backend.log.opened.root()
    reopened = durable.reopen()
    log = reopened.log.open(signer=signer, origin=ORIGIN)
    assert log.size == 5 and log.root() == root
    assert reopened.log.append(b"5") == 5
    assert [p for _, _, p in reopened.log.log_entries()] == [b"%d" % i for i in range(6)]


def test_entries_containing_a_needle_are_found_in_order(
    backend: StorageBackend, signer: Signer
) -> None:
    """The protocol ledger's catch-up asks the store for candidates, not every payload."""
    backend.log.open(signer=signer, origin=ORIGIN)
    for payload in (b'{"a":1}', b'{"type":"csp.seal"}', b'{"b":2}', b'{"op":"emp.key"}', b"x"):
        backend.log.append(payload)
    needles = (b'"type":"csp.', b'"op":"emp.')
    found = backend.log.log_entries_containing(0, 5, needles)
    assert [(i, p) for i, _, p in found] == [(1, b'{"type":"csp.seal"}'), (3, b'{"op":"emp.key"}')]
    assert [i for i, _, _ in backend.log.log_entries_containing(2, 5, needles)] == [3]
    assert backend.log.log_entries_containing(0, 5, ()) == []
