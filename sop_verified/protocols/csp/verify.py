"""Resume integrity (INV-7): the checks on what a resume reads, each raising with its code.

Pure functions over what the controller read (the manifest's bytes, each
blob's bytes, the log's inclusion proof of the seal), in the order a resume
runs them after the book's revocation and lineage checks:

1. :func:`verify_seal` — the seal's DSSE signature verifies with SOP's
   attestation key; the statement's subject is these manifest bytes; the
   manifest parses, names this snapshot and session, and its Merkle root is
   the one signed (``seal_signature``, ``manifest_digest``, ``bad_manifest``,
   ``seal_mismatch``, ``merkle_root``);
2. :func:`verify_blobs` — every entry's blob is there and has its digest
   (``missing_blob``, ``blob_digest``);
3. :func:`verify_logged` — the seal entry, byte for byte, is included in the
   log under a checkpoint signed by the log key (``seal_not_logged``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sop_verified.core.contracts import ensure, require
from sop_verified.errors import InputError, ProtocolError, ReceiptError
from sop_verified.protocols.csp.book import SealRecord
from sop_verified.protocols.csp.manifest import PREDICATE_SEAL, Manifest
from sop_verified.tools.attest import verify_envelope
from sop_verified.tools.canonical import sha256_hex
from sop_verified.tools.merkle import leaf_hash
from sop_verified.tools.signed_note import Verifier
from sop_verified.tools.tlog_receipt import ProofBundle, verify_bundle

__all__ = ["verify_blobs", "verify_logged", "verify_seal"]


def _statement(seal: SealRecord, key: Ed25519PublicKey) -> dict[str, object]:
    try:
        body = verify_envelope(seal.envelope, key)  # spec: INV-7 — the manifest signature
    except InputError as exc:  # VerificationError is an InputError too
        raise ProtocolError(
            f"the seal of `{seal.snapshot}` does not verify: {exc}", code="seal_signature"
        ) from None
    if body.get("predicateType") != PREDICATE_SEAL:
        raise ProtocolError(
            f"the seal of `{seal.snapshot}` is not a snapshot seal", code="seal_signature"
        )
    return body


def _subject_digest(body: Mapping[str, object]) -> str | None:
    subjects = body.get("subject")
    if not isinstance(subjects, list) or len(subjects) != 1 or not isinstance(subjects[0], dict):
        return None
    digest = subjects[0].get("digest")
    value = digest.get("sha256") if isinstance(digest, dict) else None
    return value if isinstance(value, str) else None


@ensure(lambda seal, result: result.snapshot_id() == seal.snapshot)
def verify_seal(seal: SealRecord, manifest_bytes: bytes, key: Ed25519PublicKey) -> Manifest:
    """Check the seal's signature and that it seals exactly these manifest bytes.

    Args:
        seal: the logged seal record.
        manifest_bytes: the manifest as read back (digest-checked by persistence).
        key: SOP's attestation public key.

    Returns:
        The parsed manifest.

    Raises:
        ProtocolError: ``seal_signature``, ``manifest_digest``, ``bad_manifest``,
            ``seal_mismatch`` or ``merkle_root``.
    """
    body = _statement(seal, key)
    found = sha256_hex(manifest_bytes)
    signed = _subject_digest(body)
    if signed != found or seal.manifest_digest != "sha256:" + found:  # spec: INV-7
        raise ProtocolError(
            f"the manifest of `{seal.snapshot}` has digest `sha256:{found}`, "
            f"the seal signed `sha256:{signed}`",
            code="manifest_digest",
        )
    manifest = Manifest.parse(manifest_bytes)
    predicate = body.get("predicate")
    want = {"snapshot": seal.snapshot, "session": seal.session, "parent": seal.parent}
    got = {k: predicate.get(k) for k in want} if isinstance(predicate, dict) else {}
    actual = {
        "snapshot": manifest.snapshot_id(),
        "session": manifest.session,
        "parent": manifest.parent,
    }
    if got != want or actual != want:
        raise ProtocolError(
            f"the seal names `{got}`, the record `{want}`, the manifest `{actual}`",
            code="seal_mismatch",
        )
    root = manifest.merkle_root()
    if not isinstance(predicate, dict) or predicate.get("merkle_root") != root:  # spec: INV-7
        raise ProtocolError(
            f"the manifest's Merkle root is `{root}`, the seal signed "
            f"`{predicate.get('merkle_root') if isinstance(predicate, dict) else None}`",
            code="merkle_root",
        )
    return manifest


@ensure(lambda manifest, result: set(result) == {e.key for e in manifest.entries})
def verify_blobs(manifest: Manifest, blobs: Mapping[str, bytes | None]) -> dict[str, bytes]:
    """Check every entry's blob is there with its digest; return the state, key to bytes.

    Raises:
        ProtocolError: ``missing_blob`` or ``blob_digest`` (the first entry that fails).
    """
    state: dict[str, bytes] = {}
    for entry in manifest.entries:
        data = blobs.get(entry.digest)
        if data is None:
            raise ProtocolError(
                f"the blob `{entry.digest}` of key `{entry.key}` is missing", code="missing_blob"
            )
        found = "sha256:" + sha256_hex(data)
        if found != entry.digest:  # spec: INV-7 — every blob's digest
            raise ProtocolError(
                f"the blob of key `{entry.key}` has digest `{found}`, "
                f"the manifest says `{entry.digest}`",
                code="blob_digest",
            )
        state[entry.key] = data
    return state


@require(lambda keys: len(keys) > 0)
def verify_logged(
    seal: SealRecord, proof: ProofBundle, keys: Sequence[Verifier], origin: str
) -> None:
    """Check the seal entry is in the log, under a checkpoint signed by the log key.

    Args:
        seal: the seal record (its ``payload`` is the entry as it was appended).
        proof: the log's inclusion proof of entry ``seal.log_index``.
        keys: the log's checkpoint verifier keys.
        origin: the log's origin.

    Raises:
        ProtocolError: ``seal_not_logged``.
    """
    if proof.index != seal.log_index or seal.receipt.leaf_hash != leaf_hash(seal.payload):
        raise ProtocolError(
            f"the seal at `{seal.log_index}` is not the entry its receipt and proof "
            f"(entry `{proof.index}`) are for",
            code="seal_not_logged",
        )
    try:
        verify_bundle(proof, keys, origin=origin, payload=seal.payload)  # spec: INV-7
    except ReceiptError as exc:
        raise ProtocolError(
            f"the seal of `{seal.snapshot}` is not in the log at `{seal.log_index}`: {exc}",
            code="seal_not_logged",
        ) from None
