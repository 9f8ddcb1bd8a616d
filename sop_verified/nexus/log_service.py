"""The log service's wiring: open the signed log, rotate its key, log attestations.

Used by :class:`~sop_verified.nexus.sop.SOP`: :func:`open_signed_log` opens
the store's log with the checkpoint key, checks it against its rollback
anchor and keeps the anchor from then on (:mod:`sop_verified.nexus.anchor`),
finishing or dropping a rotation a crash interrupted; :func:`rotate_key`
announces a new checkpoint key under the old one, :func:`attest` signs an
in-toto statement into a DSSE envelope and appends it to the log (``sop
attest export`` writes them out again).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sop_verified.errors import ConfigError, SOPError
from sop_verified.nexus.anchor import ANCHOR_NAME, AnchorWriter, check_anchor
from sop_verified.nexus.keys import (
    attestation_key_id,
    load_staged_signer,
    stage_checkpoint_key,
    unstage_checkpoint_key,
)
from sop_verified.storage.ports import StorageBackend
from sop_verified.tools.attest import sign_envelope, statement
from sop_verified.tools.canonical import canonical_json
from sop_verified.tools.key_chain import rotation_entry
from sop_verified.tools.signed_note import Signer, verify_note
from sop_verified.tools.tlog import TransparencyLog
from sop_verified.tools.tlog_store import Receipt

__all__ = ["ATTESTATION", "attest", "open_signed_log", "rotate_key"]

ATTESTATION = "attestation"
"""The ``type`` of a log entry holding a DSSE envelope."""


def _signed_by(note: str, signer: Signer) -> bool:
    try:
        verify_note(note, [signer.verifier()])
    except SOPError:
        return False
    return True


def open_signed_log(
    data_dir: Path,
    store: StorageBackend,
    origin: str,
    signer: Signer,
    *,
    on_anchor_failure: Callable[[str], None] | None = None,
    after_anchor: Callable[[int, str], None] | None = None,
    unsafe_skip_anchor: bool = False,
    read_only: bool = False,
) -> tuple[TransparencyLog, Signer]:
    """Open the log with ``signer``; check it against its rollback anchor; finish or drop a
    rotation a crash interrupted. Every later checkpoint rewrites the anchor.

    Args:
        data_dir: The data directory (for a staged key and the anchor).
        store: The opened store.
        origin: The log's origin.
        signer: The current checkpoint key.
        on_anchor_failure: Told why, when writing the anchor fails (the alarm).
        after_anchor: Told ``(size, note)`` of each checkpoint once it is durable and
            anchored (the witness publisher's ``notify``).
        unsafe_skip_anchor: DANGER: do not check the anchor (only
            ``sop log anchor --accept-current``, which logs that it did).
        read_only: change nothing in ``data_dir``: a rotation a crash interrupted is
            refused (finishing it writes the key files) instead of finished.

    Returns:
        The log and the checkpoint key now in use.

    Raises:
        IntegrityError: the tail does not match the latest checkpoint, or the
            log does not extend its anchor (or lost it).
        VerificationError: the latest checkpoint does not verify.
        ConfigError: a staged key is unreadable, or staged while ``read_only``.
        StorageError: the database failed, or the anchor could not be written.
    """
    staged = load_staged_signer(data_dir, origin)
    if staged is not None and read_only:
        raise ConfigError(
            f"a checkpoint-key rotation is staged in `{data_dir}` and a read-only open cannot"
            " finish it",
            accepted="a data directory a boot finished the rotation in (`sop status`)",
        )
    trusted = () if staged is None else (staged.verifier(),)
    writer = AnchorWriter(data_dir / ANCHOR_NAME, on_anchor_failure, after_anchor)
    log = store.log.open(origin=origin, signer=signer, trusted=trusted, on_checkpoint=writer)
    if not unsafe_skip_anchor:
        check_anchor(log, writer.path)  # spec: INV-5 — no rollback past the anchor
    if staged is None:
        return log, signer
    note = log.checkpoint_note
    announced = note is not None and _signed_by(note, staged)
    unstage_checkpoint_key(data_dir, origin, commit=announced)
    if not announced:
        return log, signer
    return store.log.open(origin=origin, signer=staged, on_checkpoint=writer), staged


def rotate_key(
    data_dir: Path, log: TransparencyLog, origin: str, old: Signer, now: int
) -> tuple[Receipt, Signer]:
    """Stage a new checkpoint key, announce it in the log under the old one, then switch.

    Args:
        data_dir: The data directory.
        log: The open, signed log.
        origin: The log's origin.
        old: The current checkpoint key.
        now: Unix seconds, recorded in the announcement.

    Returns:
        The announcement's receipt and the new key.

    Raises:
        ConfigError: a rotation is already staged.
        StorageError: the append failed; the key did not change.
    """
    staged = stage_checkpoint_key(data_dir, origin)
    try:
        entry = rotation_entry(old.verifier(), staged.verifier(), now)
        receipt = log.rotate(staged, entry)  # spec: INV-9 — announced before the switch
    except BaseException:
        unstage_checkpoint_key(data_dir, origin, commit=False)
        raise
    unstage_checkpoint_key(data_dir, origin, commit=True)
    return receipt, staged


def attest(
    log: TransparencyLog,
    key: Ed25519PrivateKey,
    kind: str,
    *,
    subjects: list[tuple[str, str]],
    predicate_type: str,
    predicate: dict[str, Any],
) -> Receipt:
    """Sign an in-toto statement into a DSSE envelope and log it.

    Args:
        log: The open, signed log.
        key: The attestation key.
        kind: What is attested (``boot_manifest``, ``proof_verdict``, ``artifact``).
        subjects: ``(name, sha256 hex)`` of each subject.
        predicate_type: The predicate's type URI.
        predicate: The predicate.

    Returns:
        The receipt of the log entry holding the envelope.

    Raises:
        InputError: a subject digest is malformed.
        StorageError: the append failed.
    """
    envelope = sign_envelope(
        statement(subjects, predicate_type, predicate), key, attestation_key_id(key)
    )
    return log.append(canonical_json({"type": ATTESTATION, "kind": kind, "envelope": envelope}))
