"""The INV-7 resume checks, one tampering at a time, on a snapshot built in memory.

Each test changes exactly one thing about an honestly sealed and logged
snapshot and asserts the check responsible refuses it with its code; the
first test shows the untouched snapshot passes every check, so each refusal
is the tampering's doing.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sop_verified.errors import ProtocolError
from sop_verified.protocols.csp import (
    Manifest,
    SealRecord,
    manifest_resource,
    seal_statement,
    verify_blobs,
    verify_logged,
    verify_seal,
)
from sop_verified.tools.attest import sign_envelope
from sop_verified.tools.canonical import canonical_json, sha256_hex
from sop_verified.tools.checkpoint import Checkpoint, sign_checkpoint
from sop_verified.tools.merkle import inclusion_proof, leaf_hash, root_hash
from sop_verified.tools.signed_note import Signer
from sop_verified.tools.tlog_receipt import ProofBundle
from sop_verified.tools.tlog_store import Receipt

ORIGIN = "test.local/log"
SEAL_KEY = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
LOG_KEY = Signer(ORIGIN, b"\x02" * 32)
STATE = {"episodes": b"episode one", "wm": b"working memory"}
DIGESTS = {k: "sha256:" + sha256_hex(v) for k, v in STATE.items()}


@dataclasses.dataclass
class Sealed:
    seal: SealRecord
    manifest: bytes
    blobs: dict[str, bytes | None]
    proof: ProofBundle


def _entry(manifest: Manifest, envelope: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "csp.seal",
        "snapshot": manifest.snapshot_id(),
        "session": manifest.session,
        "parent": manifest.parent,
        "envelope": envelope,
    }


def _log(payload: bytes, *, include: bool = True, key: Signer = LOG_KEY) -> tuple[ProofBundle, str]:
    leaves = [b"entry 0", payload if include else b"another entry", b"entry 2"]
    note = sign_checkpoint(Checkpoint(ORIGIN, len(leaves), root_hash(leaves)), key)
    return ProofBundle(1, tuple(inclusion_proof(leaves, 1)), note, payload), note


def _sealed(
    manifest: Manifest | None = None,
    *,
    statement: dict[str, Any] | None = None,
    key: Ed25519PrivateKey = SEAL_KEY,
) -> Sealed:
    m = manifest or Manifest.build(session="s", parent=None, created=100, entries=DIGESTS)
    resource = manifest_resource(m.session, m.snapshot_id())
    envelope = sign_envelope(statement or seal_statement(m, resource), key, "k")
    payload = canonical_json(_entry(m, envelope))
    proof, note = _log(payload)
    seal = SealRecord(
        snapshot=m.snapshot_id(),
        session=m.session,
        parent=m.parent,
        created=m.created,
        merkle_root=m.merkle_root(),
        manifest_digest="sha256:" + sha256_hex(m.to_bytes()),
        resource=resource,
        entries=len(m.entries),
        envelope=envelope,
        log_index=1,
        payload=payload,
        receipt=Receipt(1, leaf_hash(payload), 3, note),
    )
    blobs: dict[str, bytes | None] = {DIGESTS[k]: v for k, v in STATE.items()}
    return Sealed(seal, m.to_bytes(), blobs, proof)


def _resume(s: Sealed) -> dict[str, bytes]:
    manifest = verify_seal(s.seal, s.manifest, SEAL_KEY.public_key())
    state = verify_blobs(manifest, s.blobs)
    verify_logged(s.seal, s.proof, [LOG_KEY.verifier()], ORIGIN)
    return state


def _refused(s: Sealed, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        _resume(s)
    assert info.value.code == code, str(info.value)


def test_an_honest_snapshot_passes_every_check() -> None:
    assert _resume(_sealed()) == STATE


def test_an_edited_blob_is_refused() -> None:
    s = _sealed()
    s.blobs[DIGESTS["wm"]] = b"working memory, edited"
    _refused(s, "blob_digest")


def test_swapped_blobs_are_refused() -> None:
    s = _sealed()
    a, b = DIGESTS["wm"], DIGESTS["episodes"]
    s.blobs[a], s.blobs[b] = s.blobs[b], s.blobs[a]
    _refused(s, "blob_digest")


def test_a_missing_blob_is_refused() -> None:
    s = _sealed()
    s.blobs[DIGESTS["episodes"]] = None
    _refused(s, "missing_blob")


def test_an_edited_manifest_is_refused() -> None:
    s = _sealed()
    other = Manifest.build(
        session="s", parent=None, created=100, entries={**DIGESTS, "wm": DIGESTS["episodes"]}
    )
    s.manifest = other.to_bytes()
    _refused(s, "manifest_digest")


def test_a_manifest_with_its_entries_swapped_is_refused() -> None:
    s = _sealed()
    swapped = {"episodes": DIGESTS["wm"], "wm": DIGESTS["episodes"]}
    s.manifest = Manifest.build(session="s", parent=None, created=100, entries=swapped).to_bytes()
    _refused(s, "manifest_digest")


def test_a_non_canonical_manifest_is_refused() -> None:
    s = _sealed()
    s.manifest = s.manifest.replace(b",", b", ", 1)  # the same JSON value, other bytes
    _refused(s, "manifest_digest")


def test_a_forged_seal_is_refused() -> None:
    forged = _sealed(key=Ed25519PrivateKey.from_private_bytes(b"\x03" * 32))
    _refused(forged, "seal_signature")


def test_a_seal_with_a_wrong_merkle_root_is_refused() -> None:
    m = Manifest.build(session="s", parent=None, created=100, entries=DIGESTS)
    statement = seal_statement(m, manifest_resource("s", m.snapshot_id()))
    statement["predicate"]["merkle_root"] = "0" * 64
    _refused(_sealed(m, statement=statement), "merkle_root")


def test_a_seal_for_another_snapshot_is_refused() -> None:
    m = Manifest.build(session="s", parent=None, created=100, entries=DIGESTS)
    statement = seal_statement(m, manifest_resource("s", m.snapshot_id()))
    statement["predicate"]["snapshot"] = "snap-" + "1" * 32
    _refused(_sealed(m, statement=statement), "seal_mismatch")


def test_an_unlogged_seal_is_refused() -> None:
    s = _sealed()
    s.proof, _ = _log(s.seal.payload, include=False)  # the log holds another entry there
    _refused(s, "seal_not_logged")


def test_a_seal_under_a_checkpoint_signed_by_another_key_is_refused() -> None:
    s = _sealed()
    s.proof, _ = _log(s.seal.payload, key=Signer(ORIGIN, b"\x04" * 32))
    _refused(s, "seal_not_logged")


def test_a_seal_entry_changed_after_it_was_logged_is_refused() -> None:
    s = _sealed()
    changed = s.seal.payload.replace(b'"session":"s"', b'"session":"s","x":1')
    s.seal = dataclasses.replace(s.seal, payload=changed)
    s.proof = dataclasses.replace(s.proof, extra=changed)
    _refused(s, "seal_not_logged")


def test_a_seal_recorded_at_another_index_than_its_proof_is_refused() -> None:
    s = _sealed()
    s.seal = dataclasses.replace(s.seal, log_index=2)  # the proof (valid) is for entry 1
    _refused(s, "seal_not_logged")


def test_a_seal_whose_receipt_names_another_leaf_is_refused() -> None:
    s = _sealed()
    s.seal = dataclasses.replace(s.seal, receipt=Receipt(1, b"\x09" * 32, 3, None))
    _refused(s, "seal_not_logged")
