"""A C2SP tlog-witness (c2sp.org/tlog-witness) without HTTP: ``add-checkpoint`` decided.

:meth:`Witness.add_checkpoint` takes the request body and returns the
spec's answer, in the spec's order:

1. the body is an old size line ``old <n>``, at most 63 base64 consistency
   proof hashes, an empty line, and a checkpoint note; anything else is
   **400** (``malformed``);
2. a checkpoint origin the witness is not configured for is **404**
   (``unknown_log``);
3. no signature by one of that log's keys verifies (signatures by unknown
   keys are ignored; a known key whose signature fails rejects the note,
   SOP's signed notes being stricter than the spec here) is **403**
   (``bad_signature``);
4. an old size above the checkpoint's size is **400** (``malformed``);
5. an old size that is not the size of the latest checkpoint this witness
   cosigned for the log (0 if none) is **409** (``old_size_mismatch``), with
   that size;
6. at the same size, a root hash other than the cosigned one is **409**
   (``fork``), with the size;
7. a consistency proof that does not prove the new checkpoint extends the
   cosigned one (or is not empty when the old size is 0 or equal to the new
   one) is **422** (``bad_proof``);
8. otherwise the new checkpoint is recorded, durably and by compare-and-set
   (:meth:`~sop_verified.tools.witness_store.WitnessStore.advance`: a request
   that lost a race to another is answered 409 with the size that won), and
   only then cosigned: **200** with the ``cosignature/v1`` line.

A checkpoint refused at 6 or 7 is kept as evidence of log misbehaviour.
The request format is written by :func:`format_add_checkpoint` and read by
:func:`parse_add_checkpoint`.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sop_verified.errors import InputError, VerificationError
from sop_verified.tools.checkpoint import Checkpoint
from sop_verified.tools.cosignature import CosignatureSigner
from sop_verified.tools.merkle import HASH_SIZE, MAX_TREE_SIZE, verify_consistency
from sop_verified.tools.note_keys import canonical_b64decode
from sop_verified.tools.signed_note import MAX_NOTE_SIZE, Verifier, parse_note, verify_note
from sop_verified.tools.witness_store import Latest, WitnessStore

__all__ = [
    "MAX_BODY_SIZE",
    "MAX_PROOF_LINES",
    "SIZE_MEDIA_TYPE",
    "AddCheckpoint",
    "Cosigned",
    "Refused",
    "Witness",
    "format_add_checkpoint",
    "parse_add_checkpoint",
]

MAX_PROOF_LINES = 63
"""Most consistency proof lines a request may carry (the spec's MUST)."""

MAX_BODY_SIZE = MAX_NOTE_SIZE + 4096
"""Most bytes an ``add-checkpoint`` body may have: a note and its proof lines."""

SIZE_MEDIA_TYPE = "text/x.tlog.size"
"""The media type of a 409 answer's body: the witness's latest cosigned size and a newline."""

_OLD = re.compile(rb"old (0|[1-9][0-9]{0,19})")


@dataclass(frozen=True, slots=True)
class AddCheckpoint:
    """A parsed ``add-checkpoint`` request: old size, proof, the checkpoint note as sent."""

    old_size: int
    proof: tuple[bytes, ...]
    note: bytes


@dataclass(frozen=True, slots=True)
class Cosigned:
    """Answer 200: the checkpoint was recorded; ``lines`` are the witness's cosignature lines."""

    checkpoint: Checkpoint
    lines: str

    status = 200


@dataclass(frozen=True, slots=True)
class Refused:
    """Any other answer: the HTTP ``status``, a ``code``, a message, and the witness's size.

    ``size`` is the tree size of the latest checkpoint the witness cosigned for the
    log, set for 409 (the body the spec asks for), None otherwise.
    """

    status: int
    code: str
    message: str
    size: int | None = None


def _malformed(message: str) -> InputError:
    return InputError(
        f"add-checkpoint body is malformed: {message}",
        accepted="`old <size>`, at most 63 base64 hashes, an empty line, a checkpoint note",
    )


def format_add_checkpoint(old_size: int, proof: Sequence[bytes], note: str | bytes) -> bytes:
    """The ``add-checkpoint`` request body: old size line, proof lines, empty line, note.

    Args:
        old_size: The size of the checkpoint the witness last cosigned (0: none).
        proof: The consistency proof from ``old_size`` to the checkpoint's size.
        note: The signed checkpoint note.

    Returns:
        The body.

    Raises:
        ValueError: the size is out of range, a hash is not 32 bytes, or the
            proof has more than 63 hashes.
    """
    if not isinstance(old_size, int) or not 0 <= old_size <= MAX_TREE_SIZE:
        raise ValueError(f"old size `{old_size!r}` is not in `[0, 2**64)`")
    if len(proof) > MAX_PROOF_LINES or any(len(h) != HASH_SIZE for h in proof):
        raise ValueError(f"a proof is at most {MAX_PROOF_LINES} hashes of {HASH_SIZE} bytes")
    raw = note.encode() if isinstance(note, str) else note
    lines = b"".join(base64.b64encode(h) + b"\n" for h in proof)
    return b"old %d\n" % old_size + lines + b"\n" + raw


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """Parse an ``add-checkpoint`` body; the note is not parsed or verified here.

    Args:
        body: The request body (untrusted).

    Returns:
        The request.

    Raises:
        InputError: the body breaks the layout.
    """
    if not isinstance(body, bytes) or len(body) > MAX_BODY_SIZE:
        raise _malformed(f"a body is at most `{MAX_BODY_SIZE}` bytes")
    head, sep, note = body.partition(b"\n\n")
    if not sep:
        raise _malformed("no empty line before the checkpoint")
    lines = head.split(b"\n")
    old = _OLD.fullmatch(lines[0])
    if old is None or int(old.group(1)) > MAX_TREE_SIZE:
        raise _malformed("the first line is not `old <size>` (decimal, no leading zeros)")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise _malformed(f"`{len(lines) - 1}` proof lines, at most `{MAX_PROOF_LINES}`")
    proof = []
    for i, line in enumerate(lines[1:], start=1):
        digest = canonical_b64decode(line)
        if digest is None or len(digest) != HASH_SIZE:
            raise _malformed(f"proof line `{i}` is not canonical base64 of {HASH_SIZE} bytes")
        proof.append(digest)
    return AddCheckpoint(int(old.group(1)), tuple(proof), note)


class Witness:
    """A witness: its cosigner key, the logs it witnesses and their keys, its state."""

    def __init__(
        self,
        signer: CosignatureSigner,
        logs: Mapping[str, Sequence[Verifier]],
        store: WitnessStore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Make a witness.

        Args:
            signer: The witness's cosigner key.
            logs: Each witnessed log's origin and the verifier keys of its checkpoints.
            store: Where the latest cosigned checkpoint of each log is kept.
            clock: POSIX seconds now (the cosignatures' timestamps).

        Raises:
            ValueError: a log has no key.
        """
        if any(not keys for keys in logs.values()):
            raise ValueError("every witnessed log needs at least one verifier key")
        self.signer = signer
        self.logs = {origin: tuple(keys) for origin, keys in logs.items()}
        self.store = store
        self._clock = clock

    def add_checkpoint(self, body: bytes) -> Cosigned | Refused:
        """Decide an ``add-checkpoint`` request (module docstring, steps 1 to 8).

        Args:
            body: The request body (untrusted).

        Returns:
            :class:`Cosigned` (200) or :class:`Refused` with the spec's status.

        Raises:
            StorageError: the state could not be read or written; nothing was cosigned.
        """
        try:
            request = parse_add_checkpoint(body)
            unverified = Checkpoint.from_text(parse_note(request.note)[0].decode())
        except InputError as exc:
            return Refused(400, "malformed", str(exc))
        keys = self.logs.get(unverified.origin)
        if keys is None:
            return Refused(404, "unknown_log", f"no log `{unverified.origin}` is witnessed here")
        try:
            checkpoint = Checkpoint.from_text(verify_note(request.note, keys).text)
        except VerificationError as exc:
            return Refused(403, "bad_signature", f"the checkpoint is not the log's: {exc}")
        if request.old_size > checkpoint.size:
            return Refused(
                400,
                "malformed",
                f"old size `{request.old_size}` is above the checkpoint's `{checkpoint.size}`",
            )
        seen = self.store.latest(checkpoint.origin)
        refused = self._check(request, checkpoint, seen)
        if refused is not None:
            return refused
        now = int(self._clock())
        won = self.store.advance(seen, checkpoint, request.note.decode(), now=now)
        if won is not None:
            return _mismatch(request.old_size, won)
        # spec: INV-5 -- cosigned only once recorded, so never two inconsistent checkpoints
        return Cosigned(checkpoint, self.signer.cosign(checkpoint.to_text().encode(), now))

    def _check(
        self, request: AddCheckpoint, checkpoint: Checkpoint, seen: Latest
    ) -> Refused | None:
        if request.old_size != seen.size:
            return _mismatch(request.old_size, seen)
        if seen.root is None or seen.size in (0, checkpoint.size):
            same_size = seen.root is not None and checkpoint.size == seen.size
            if same_size and checkpoint.root_hash != seen.root:
                # the size the witness cosigned (0 is a size too), another root: a fork
                self._evidence(checkpoint, "fork", request)
                return Refused(
                    409,
                    "fork",
                    f"at size `{seen.size}` the witness cosigned root"
                    f" `{(seen.root or b'').hex()}`, not `{checkpoint.root_hash.hex()}`",
                    seen.size,
                )
            if request.proof:
                return Refused(422, "bad_proof", "the consistency proof must be empty here")
            return None
        try:
            verify_consistency(
                seen.size, checkpoint.size, list(request.proof), seen.root, checkpoint.root_hash
            )
        except VerificationError as exc:
            self._evidence(checkpoint, "bad_proof", request)
            return Refused(422, "bad_proof", f"the consistency proof fails: {exc}")
        return None

    def _evidence(self, checkpoint: Checkpoint, code: str, request: AddCheckpoint) -> None:
        self.store.record_evidence(
            checkpoint.origin, code, request.old_size, request.note.decode(), int(self._clock())
        )


def _mismatch(old_size: int, latest: Latest) -> Refused:
    return Refused(
        409,
        "old_size_mismatch",
        f"old size `{old_size}` is not the witness's latest cosigned size `{latest.size}`",
        latest.size,
    )
