"""C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys.

A note is UTF-8 text ending in a newline, a blank line, then one or more
signature lines ``— <key name> base64(key id || signature)``. The key id is
the first 4 bytes (big-endian) of ``SHA-256(name || 0x0A || 0x01 || pubkey)``.
The keys (:class:`Signer`, :class:`Verifier`, :func:`generate`) live in
:mod:`sop_verified.tools.note_keys` and are re-exported here.

Opening a note is fail-closed: the text is returned only if a signature by a
known key verifies; a known key whose signature fails rejects the whole note
(the spec's SHOULD, taken as MUST); signatures by unknown keys are ignored
but counted against :data:`MAX_SIGNATURES`. Stricter than the Go package, on
purpose: base64 must be canonical and a note at most
:data:`MAX_NOTE_SIZE` bytes (docs/adr/0003-merkle-and-notes-by-hand.md).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass

from sop_verified.errors import ConfigError, InputError, VerificationError
from sop_verified.tools.note_keys import (
    ALG_ED25519,
    Signer,
    Verifier,
    canonical_b64decode,
    generate,
    key_id,
    valid_key_name,
)

__all__ = [
    "ALG_ED25519",
    "MAX_NOTE_SIZE",
    "MAX_SIGNATURES",
    "Note",
    "Signature",
    "Signer",
    "Verifier",
    "generate",
    "key_id",
    "open_note",
    "parse_note",
    "sign_note",
    "verify_note",
]

MAX_SIGNATURES = 100
"""Most signature lines a note may carry (the spec asks verifiers to accept at least 16)."""

MAX_NOTE_SIZE = 1 << 20
"""Most bytes an encoded note may have."""

_SIG_PREFIX = "— ".encode()
_CONTROL = re.compile(rb"[\x00-\x09\x0b-\x1f]")


@dataclass(frozen=True, slots=True)
class Signature:
    """One signature line: key name, key id and the raw signature (without key id)."""

    name: str
    key_id: int
    signature: bytes


@dataclass(frozen=True, slots=True)
class Note:
    """An opened note: its text and its verified and ignored (unknown-key) signatures."""

    text: str
    verified: tuple[Signature, ...]
    unverified: tuple[Signature, ...]


def _malformed(what: str, where: str = "note") -> InputError:
    return InputError(f"note is malformed: {what}", where=where, accepted="a C2SP signed note")


def _check_text(raw: bytes, where: str) -> None:
    if len(raw) > MAX_NOTE_SIZE:
        raise _malformed(f"`{len(raw)}` bytes exceed `{MAX_NOTE_SIZE}`", where)
    try:
        raw.decode()
    except UnicodeDecodeError as exc:
        raise _malformed(f"not UTF-8 at byte `{exc.start}`", where) from None
    bad = _CONTROL.search(raw)
    if bad is not None:
        raise _malformed(f"control character `{bad.group()!r}` at byte `{bad.start()}`", where)


def _encode(note: str | bytes, where: str) -> bytes:
    if isinstance(note, bytes):
        return note
    if not isinstance(note, str):
        raise TypeError(f"{where} must be str or bytes, not `{type(note).__name__}`")
    try:
        return note.encode()
    except UnicodeEncodeError as exc:
        raise _malformed(f"not UTF-8 at character `{exc.start}`", where) from None


def _parse_line(line: bytes, number: int) -> Signature:
    where = f"signature line {number}"
    if not line.startswith(_SIG_PREFIX):
        raise _malformed("a signature line must start with `— `", where)
    name_bytes, _, b64 = line[len(_SIG_PREFIX) :].partition(b" ")
    name = name_bytes.decode()
    if not valid_key_name(name):
        raise _malformed(f"key name `{name}` is not allowed", where)
    raw = canonical_b64decode(b64)
    if raw is None or len(raw) < 5:
        raise _malformed("signature is not canonical base64 of a key id and a signature", where)
    return Signature(name, int.from_bytes(raw[:4], "big"), raw[4:])


def _parse(raw: bytes) -> tuple[bytes, list[Signature]]:
    _check_text(raw, "note")
    split = raw.rfind(b"\n\n")
    if split < 0:
        raise _malformed("no blank line before the signatures")
    text, block = raw[: split + 1], raw[split + 2 :]
    if not block.endswith(b"\n"):
        raise _malformed("the signature block must end in a newline")
    lines = block[:-1].split(b"\n")
    if len(lines) > MAX_SIGNATURES:
        raise _malformed(f"`{len(lines)}` signatures exceed `{MAX_SIGNATURES}`")
    return text, [_parse_line(line, i) for i, line in enumerate(lines, start=1)]


def parse_note(note: str | bytes) -> tuple[bytes, tuple[Signature, ...]]:
    """Split ``note`` into its text and its signature lines, verifying none of them.

    For callers that check signatures of another kind on the same text (C2SP
    tlog-cosignature, :mod:`sop_verified.tools.cosignature`); the text is
    trusted only once a signature over it has been verified.

    Args:
        note: The encoded signed note (untrusted).

    Returns:
        The note text (ending in a newline) and its signature lines, in order.

    Raises:
        InputError: the note is malformed.
    """
    text, sigs = _parse(_encode(note, "note"))
    return text, tuple(sigs)


def _index(verifiers: Iterable[Verifier]) -> dict[tuple[str, int], Verifier]:
    known: dict[tuple[str, int], Verifier] = {}
    for v in verifiers:
        if not isinstance(v, Verifier):
            raise TypeError(f"verifiers must be Verifier objects, not `{type(v).__name__}`")
        other = known.setdefault((v.name, v.key_id), v)
        if other != v:
            raise ConfigError(f"two verifier keys share name and key id `{v.name}+{v.key_id:08x}`")
    return known


def verify_note(note: str | bytes, verifiers: Iterable[Verifier]) -> Note:
    """Parse ``note`` and check every signature by a known key.

    Args:
        note: The encoded signed note (untrusted).
        verifiers: The trusted keys.

    Returns:
        The note with its verified signatures (at least one) and the
        signatures by unknown keys, which were ignored.

    Raises:
        InputError: the note is malformed.
        VerificationError: a known key's signature fails, or no known key signed.
        ConfigError: two different verifiers share a name and key id.
    """
    known = _index(verifiers)
    text, sigs = _parse(_encode(note, "note"))
    verified: dict[Signature, None] = {}
    unverified: dict[Signature, None] = {}
    for sig in sigs:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            unverified[sig] = None
        elif sig not in verified:
            verifier.verify(text, sig.signature)
            verified[sig] = None
    if not verified:
        raise VerificationError(
            "note has no signature by a known key",
            expected=sorted(f"{n}+{i:08x}" for n, i in known),
            calculated=[f"{s.name}+{s.key_id:08x}" for s in unverified],
        )
    return Note(text.decode(), tuple(verified), tuple(unverified))


def open_note(note: str | bytes, verifiers: Iterable[Verifier]) -> str:
    """Return the text of ``note`` if a known key signed it, else raise.

    Args:
        note: The encoded signed note (untrusted).
        verifiers: The trusted keys.

    Returns:
        The note text, ending in a newline.

    Raises:
        InputError: the note is malformed.
        VerificationError: a known key's signature fails, or no known key signed.
        ConfigError: two different verifiers share a name and key id.
    """
    return verify_note(note, verifiers).text


def sign_note(text: str, *signers: Signer) -> str:
    """Sign ``text`` with each signer and return the encoded note.

    Args:
        text: The note text: UTF-8, ending in a newline, no control characters
            other than newline.
        *signers: One or more signers with distinct name and key id.

    Returns:
        The signed note.

    Raises:
        InputError: ``text`` breaks the note format.
        ValueError: no signer, too many, or two with the same name and key id.
    """
    raw = _encode(text, "note text")
    _check_text(raw, "note text")
    if not raw.endswith(b"\n"):
        raise _malformed("the text must end in a newline", "note text")
    if not 0 < len(signers) <= MAX_SIGNATURES:
        raise ValueError(f"sign_note needs 1 to {MAX_SIGNATURES} signers, got {len(signers)}")
    if len({(s.name, s.key_id) for s in signers}) != len(signers):
        raise ValueError("two signers share a name and key id")
    lines = []
    for s in signers:
        sig = base64.b64encode(s.key_id.to_bytes(4, "big") + s.sign(raw)).decode()
        lines.append(f"— {s.name} {sig}\n")
    return raw.decode() + "\n" + "".join(lines)
