"""Offline receipts: C2SP tlog-proof bundles (c2sp.org/tlog-proof), written and checked.

A bundle is the header ``c2sp.org/tlog-proof@v1``, an ``extra`` line with
the base64 entry payload (SOP always includes it, so the file alone suffices),
``index <n>``, the inclusion proof one base64 hash per line, a blank line,
then the signed checkpoint verbatim. :func:`verify_bundle` needs nothing but
the bundle and the log's verifier key: it checks the checkpoint signature,
recomputes the leaf hash from the payload (and compares it with a payload or
leaf hash the caller holds), and verifies the inclusion proof against the
signed root. Given witness keys, it also checks the C2SP tlog-cosignature
lines the checkpoint note carries (:mod:`sop_verified.tools.cosignature`):
at least the required number of those witnesses must have cosigned it. Each
failure names its stage: ``format``, ``signature``, ``cosignature``,
``payload`` or ``inclusion``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass

from sop_verified.errors import InputError, ReceiptError, SOPError, VerificationError
from sop_verified.tools.checkpoint import Checkpoint, open_checkpoint
from sop_verified.tools.cosignature import Cosignature, CosignatureVerifier, verify_cosignatures
from sop_verified.tools.merkle import HASH_SIZE, leaf_hash, verify_inclusion
from sop_verified.tools.note_keys import canonical_b64decode
from sop_verified.tools.signed_note import Verifier

__all__ = [
    "HEADER",
    "MAX_BUNDLE_SIZE",
    "ProofBundle",
    "VerifiedReceipt",
    "verify_bundle",
]

HEADER = "c2sp.org/tlog-proof@v1"
"""The first line of every bundle."""

MAX_BUNDLE_SIZE = 4 << 20
"""Most bytes a bundle may have (the payload is at most a request's size)."""

_MAX_PROOF = 64
_INDEX = re.compile(r"index (0|[1-9][0-9]{0,19})")
_ACCEPTED = (
    "`c2sp.org/tlog-proof@v1`, an optional `extra <base64>` line, `index <n>`,"
    " base64 hashes, a blank line, a signed checkpoint"
)


@dataclass(frozen=True, slots=True)
class ProofBundle:
    """A parsed tlog-proof: entry index, inclusion proof, checkpoint note and extra data."""

    index: int
    proof: tuple[bytes, ...]
    checkpoint: str
    extra: bytes | None = None

    def to_text(self) -> str:
        """Return the bundle in the C2SP tlog-proof layout.

        Returns:
            The text, ending with the checkpoint note.
        """
        lines = [HEADER]
        if self.extra is not None:
            lines.append("extra " + base64.b64encode(self.extra).decode())
        lines.append(f"index {self.index}")
        lines += [base64.b64encode(h).decode() for h in self.proof]
        return "\n".join(lines) + "\n\n" + self.checkpoint

    @classmethod
    def from_text(cls, text: str | bytes) -> ProofBundle:
        """Parse a bundle strictly.

        Args:
            text: The bundle (untrusted).

        Returns:
            The bundle; its checkpoint is not verified yet.

        Raises:
            ReceiptError: stage ``format``: the bundle breaks the layout.
        """
        raw = text.encode() if isinstance(text, str) else text
        if not isinstance(raw, bytes) or len(raw) > MAX_BUNDLE_SIZE:
            raise _format(f"a bundle is bytes or text of at most `{MAX_BUNDLE_SIZE}` bytes")
        try:
            body = raw.decode()
        except UnicodeDecodeError as exc:
            raise _format(f"not UTF-8 at byte `{exc.start}`") from None
        head, sep, note = body.partition("\n\n")
        if not sep or not note:
            raise _format("no blank line before the checkpoint")
        lines = head.split("\n")
        if lines[0] != HEADER:
            raise _format(f"first line `{lines[0][:40]}` is not `{HEADER}`")
        extra, rest = None, lines[1:]
        if rest and rest[0].startswith("extra "):
            extra = canonical_b64decode(rest[0][6:])
            if extra is None:
                raise _format("the `extra` line is not canonical base64")
            rest = rest[1:]
        if not rest or not _INDEX.fullmatch(rest[0]):
            raise _format("missing or malformed `index` line (a decimal without leading zeros)")
        if len(rest) - 1 > _MAX_PROOF:
            raise _format(f"`{len(rest) - 1}` proof hashes, at most `{_MAX_PROOF}`")
        proof = []
        for i, line in enumerate(rest[1:], start=1):
            digest = canonical_b64decode(line)
            if digest is None or len(digest) != HASH_SIZE:
                raise _format(f"proof line `{i}` is not canonical base64 of {HASH_SIZE} bytes")
            proof.append(digest)
        return cls(int(rest[0][6:]), tuple(proof), note, extra)


@dataclass(frozen=True, slots=True)
class VerifiedReceipt:
    """What a verified bundle proves: entry ``index`` with ``leaf_hash`` is in ``checkpoint``.

    ``cosignatures`` are the verified cosignatures of the witnesses the caller trusts.
    """

    index: int
    leaf_hash: bytes
    payload: bytes | None
    checkpoint: Checkpoint
    cosignatures: tuple[Cosignature, ...] = ()


def _format(message: str) -> ReceiptError:
    return ReceiptError("format", message, expected=_ACCEPTED)


def verify_bundle(
    bundle: str | bytes | ProofBundle,
    verifiers: Iterable[Verifier],
    *,
    origin: str | None = None,
    payload: bytes | None = None,
    expected_leaf: bytes | None = None,
    witnesses: Iterable[CosignatureVerifier] = (),
    min_cosignatures: int | None = None,
    now: int | None = None,
) -> VerifiedReceipt:
    """Check a receipt offline: signature, cosignatures, payload hash, inclusion.

    Args:
        bundle: The tlog-proof bundle (untrusted).
        verifiers: The log key(s) the auditor trusts.
        origin: The origin the checkpoint must carry; default the first key's name
            (SOP names its checkpoint key after the origin).
        payload: The entry as the holder knows it; must equal the bundle's.
        expected_leaf: The leaf hash the holder was given (a decision receipt's).
        witnesses: The witnesses (cosigners) the auditor trusts.
        min_cosignatures: How many of them must have cosigned the checkpoint;
            default all of them (none when no witness is given).
        now: The auditor's clock, POSIX seconds (default the wall clock): a
            cosignature dated in the future is refused.

    Returns:
        What was proved.

    Raises:
        ReceiptError: a check failed; ``stage`` names it, ``expected`` and
            ``calculated`` hold the evidence.
    """
    parsed = bundle if isinstance(bundle, ProofBundle) else ProofBundle.from_text(bundle)
    keys = list(verifiers)
    checkpoint = _signed_checkpoint(parsed.checkpoint, keys, origin)
    cosigned = _cosigned(parsed.checkpoint, list(witnesses), min_cosignatures, now)
    leaf = _leaf(parsed, payload, expected_leaf)
    try:
        verify_inclusion(
            leaf, parsed.index, checkpoint.size, list(parsed.proof), checkpoint.root_hash
        )
    except VerificationError as exc:
        raise ReceiptError(
            "inclusion",
            f"entry `{parsed.index}` is not proved in the tree of size `{checkpoint.size}`: {exc}",
            expected=exc.expected,
            calculated=exc.calculated,
        ) from None
    return VerifiedReceipt(parsed.index, leaf, parsed.extra, checkpoint, cosigned)


def _signed_checkpoint(note: str, keys: list[Verifier], origin: str | None) -> Checkpoint:
    if not keys:
        raise ReceiptError("signature", "no verifier key given", expected="a log verifier key")
    try:
        checkpoint = open_checkpoint(note, keys, origin=origin or keys[0].name)
    except VerificationError as exc:
        raise ReceiptError(
            "signature", str(exc), expected=exc.expected, calculated=exc.calculated
        ) from None
    except (InputError, SOPError) as exc:
        raise ReceiptError("format", f"the checkpoint is malformed: {exc}") from None
    return checkpoint


def _cosigned(
    note: str, witnesses: list[CosignatureVerifier], minimum: int | None, now: int | None
) -> tuple[Cosignature, ...]:
    need = len(witnesses) if minimum is None else minimum
    if need == 0 and not witnesses:
        return ()
    try:
        return verify_cosignatures(note, witnesses, minimum=need, now=now)
    except VerificationError as exc:
        raise ReceiptError(
            "cosignature", str(exc), expected=exc.expected, calculated=exc.calculated
        ) from None
    except InputError as exc:
        raise ReceiptError("cosignature", str(exc), expected=exc.accepted) from None


def _leaf(parsed: ProofBundle, payload: bytes | None, expected_leaf: bytes | None) -> bytes:
    if payload is not None and parsed.extra is not None and payload != parsed.extra:
        raise ReceiptError("payload", "the given payload differs from the bundle's")
    entry = payload if payload is not None else parsed.extra
    if entry is not None:
        leaf = leaf_hash(entry)
    elif expected_leaf is not None:
        leaf = expected_leaf
    else:
        raise ReceiptError(
            "payload", "the bundle carries no payload and none was given", expected="the entry"
        )
    if expected_leaf is not None and leaf != expected_leaf:
        raise ReceiptError(
            "payload",
            "the payload does not hash to the receipt's leaf hash",
            expected=expected_leaf.hex(),
            calculated=leaf.hex(),
        )
    return leaf
