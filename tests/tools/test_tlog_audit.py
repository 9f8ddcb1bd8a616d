"""The audit trusts one key and the entries: forged rotations, duplicates, stray tiles are found."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tlog_memory import MemoryLogReader, MemoryLogStore

from sop_verified.errors import InputError, VerificationError
from sop_verified.tools.key_chain import KeyChain, parse_rotation, rotation_entry
from sop_verified.tools.signed_note import Signer, generate
from sop_verified.tools.tlog import TransparencyLog
from sop_verified.tools.tlog_audit import AuditReport, audit_log

ORIGIN = "example.test/log"


def _key() -> Signer:
    return Signer.from_string(generate(ORIGIN)[0])


def _audit(store: MemoryLogStore, trusted: Signer, **kw: object) -> AuditReport:
    return audit_log(
        MemoryLogReader(store),
        origin=ORIGIN,
        trusted=trusted.verifier(),
        **kw,  # type: ignore[arg-type]  # progress and chunk
    )


def test_clean_log_passes_and_reports_progress() -> None:
    store, key = MemoryLogStore(), _key()
    log = TransparencyLog(store, origin=ORIGIN, signer=key)
    log.append_many([b"%d" % i for i in range(50)])
    for i in range(5):
        log.append(b"more %d" % i)
    seen: list[tuple[int, int]] = []
    report = _audit(store, key, progress=lambda d, r: seen.append((d, r)), chunk=16)
    assert report.ok and report.entries == 55 and report.verified_checkpoints == 6
    assert report.root == log.root().hex()
    assert seen[-1] == (55, 55) and len(seen) > 1


def test_rotation_chain_is_followed() -> None:
    store, old, new = MemoryLogStore(), _key(), _key()
    log = TransparencyLog(store, origin=ORIGIN, signer=old)
    log.append(b"a")
    log.rotate(new, rotation_entry(old.verifier(), new.verifier(), 1))
    log.append(b"b")
    assert _audit(store, old).ok
    assert not _audit(store, new).ok  # the new key alone did not sign the first checkpoint


def test_forged_rotation_by_an_attacker_is_found() -> None:
    store, key, attacker = MemoryLogStore(), _key(), _key()
    log = TransparencyLog(store, origin=ORIGIN, signer=key)
    log.append_many([b"a", b"b"])
    # the attacker appends an announcement of their key, signing with their own key
    forged = TransparencyLog(store, origin=ORIGIN, signer=attacker, trusted=[key.verifier()])
    forged.append(rotation_entry(key.verifier(), attacker.verifier(), 1))
    forged.append(b"evil")
    report = _audit(store, key)
    assert not report.ok
    assert report.findings[0].kind == "checkpoint_signature"
    assert report.first_bad_index == 2


def test_rotation_from_an_untrusted_key_is_refused() -> None:
    chain = KeyChain(_key().verifier())
    a, b = _key().verifier(), _key().verifier()
    chain.observe(0, rotation_entry(a, b, 1))
    with pytest.raises(VerificationError, match="not the trusted key"):
        chain.signers_for(1)


def test_malformed_announcements_are_input_errors() -> None:
    assert parse_rotation(0, b'{"type":"decision"}') is None
    assert parse_rotation(0, b'not json "type":"log.key_rotation"') is None
    with pytest.raises(InputError, match="names no keys"):
        parse_rotation(3, b'{"type":"log.key_rotation","old":1}')
    other = Signer.from_string(generate("other.name")[0]).verifier()
    text = b'{"type":"log.key_rotation","old":"%s","new":"%s"}' % (
        _key().verifier().vkey.encode(),
        other.vkey.encode(),
    )
    with pytest.raises(InputError, match="changes the key name"):
        parse_rotation(3, text)
    key = _key().verifier()
    with pytest.raises(ValueError, match="different key with the same name"):
        rotation_entry(key, key, 0)


class _Duplicating(MemoryLogReader):
    def iter_entries(self, chunk: int) -> Iterator[tuple[int, bytes, bytes]]:
        for row in super().iter_entries(chunk):
            yield row
            if row[0] == 2:
                yield row


def test_duplicate_row_is_found() -> None:
    store, key = MemoryLogStore(), _key()
    TransparencyLog(store, origin=ORIGIN, signer=key).append_many([b"%d" % i for i in range(5)])
    report = audit_log(_Duplicating(store), origin=ORIGIN, trusted=key.verifier())
    assert report.findings[0].kind == "duplicate_entry"
    assert report.first_bad_index == 3


def test_entries_without_any_checkpoint_are_found() -> None:
    store = MemoryLogStore()
    TransparencyLog(store, origin=ORIGIN, signer=None).append_many([b"a", b"b"])
    report = _audit(store, _key())
    assert [f.kind for f in report.findings] == ["no_checkpoint"]
    assert report.first_bad_index == 0


def test_missing_and_stray_tiles_are_found() -> None:
    store, key = MemoryLogStore(), _key()
    TransparencyLog(store, origin=ORIGIN, signer=key).append_many([b"%d" % i for i in range(40)])
    first = min(store.tiles)
    tile = store.tiles.pop(first)
    report = _audit(store, key)
    assert [f.kind for f in report.findings] == ["tile"]
    assert "missing" in report.findings[0].message
    store.tiles[first] = tile
    store.tiles[(10_000 << 6) | 0] = tile
    report = _audit(store, key)
    assert [f.kind for f in report.findings] == ["tile"]
    assert "not in the tree" in report.findings[0].message


def test_findings_are_capped_but_counted() -> None:
    store, key = MemoryLogStore(), _key()
    TransparencyLog(store, origin=ORIGIN, signer=key).append_many([b"%d" % i for i in range(300)])
    for i in range(300):
        leaf, payload = store.entries[i]
        store.entries[i] = (leaf, payload + b"!")
    report = _audit(store, key)
    assert len(report.findings) == 100 and report.total_findings > 300
    assert report.to_dict()["total_findings"] == report.total_findings
