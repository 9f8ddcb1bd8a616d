"""Conformance: the protocol record index (idempotent rows, a mark that never goes down)."""

from __future__ import annotations

import pytest
from conformance_backends import ORIGIN, Opened

from sop_verified.errors import StorageError
from sop_verified.storage.ports import StorageBackend
from sop_verified.tools.signed_note import Signer


def test_records_read_their_payload_from_the_log(backend: StorageBackend, signer: Signer) -> None:
    backend.log.open(signer=signer, origin=ORIGIN)
    backend.log.append(b"not a record")
    index = backend.log.append(b'{"type":"drac.phase"}')
    records = backend.records
    assert records.indexed_to() == 0 and records.records() == []
    records.add(index, "drac.phase", b"receipt", indexed_to=index + 1)
    with pytest.raises(StorageError):  # INV-11: written once; a row already there is not SOP's
        records.add(index, "drac.other", b"changed", indexed_to=0)
    assert records.indexed_to() == index + 1
    assert records.records() == [(index, "drac.phase", b'{"type":"drac.phase"}', b"receipt")]
    records.set_indexed_to(1)
    assert records.indexed_to() == index + 1  # never lowered
    records.set_indexed_to(5)
    assert records.indexed_to() == 5


def test_a_record_missing_from_the_log_is_an_error(backend: StorageBackend) -> None:
    backend.records.add(3, "csp.seal", b"receipt", indexed_to=4)
    with pytest.raises(StorageError, match="missing from the log"):
        backend.records.records()


def test_records_survive_a_reopen(durable: Opened, signer: Signer) -> None:
    durable.backend.log.open(signer=signer, origin=ORIGIN)
    index = durable.backend.log.append(b'{"type":"csp.seal"}')
    durable.backend.records.add(index, "csp.seal", b"r", indexed_to=index + 1)
    b = durable.reopen()
    assert b.records.indexed_to() == index + 1
    assert b.records.records() == [(index, "csp.seal", b'{"type":"csp.seal"}', b"r")]
