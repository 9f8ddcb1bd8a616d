"""C2SP tlog-cosignature (c2sp.org/tlog-cosignature): Ed25519 ``cosignature/v1``.

A cosignature is a signed-note signature line on a checkpoint by a *cosigner*
(a witness): ``— <name> base64(key id || timestamp || signature)``. Here:

- the key id is ``SHA-256(name || 0x0A || 0x04 || 32-byte public key)[:4]``;
- ``timestamp`` is a big-endian u64 of POSIX seconds, at most ``2**63 - 1``;
- the Ed25519 signature covers ``"cosignature/v1\\ntime <T>\\n"`` followed by
  the whole checkpoint note text (extension lines included), ``<T>`` the
  timestamp in decimal without leading zeros.

Verifier keys are ``<name>+<hex key id>+base64(0x04 || public key)``. A plain
signed-note Ed25519 key (type ``0x01``) of the same public key is accepted too
and read as the cosigner's key, as transparency-dev/formats does: the key id
on the lines is then the ``0x04`` one. Signer keys are
``PRIVATE+KEY+<name>+<hex key id>+base64(0x04 || seed)``.

Checking is fail-closed (:func:`verify_cosignatures`): a line by a known
cosigner that does not verify rejects the note; lines by unknown keys are
ignored; a timestamp too far in the future is refused; the quorum is counted
in distinct cosigners. Only Ed25519 ``cosignature/v1`` is implemented (not
the ML-DSA-44 ``subtree/v1`` type).
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sop_verified.errors import ConfigError, InputError, VerificationError
from sop_verified.tools.note_keys import (
    ALG_ED25519,
    canonical_b64decode,
    key_id,
    valid_key_name,
)
from sop_verified.tools.signed_note import parse_note

__all__ = [
    "ALG_COSIGNATURE_V1",
    "MAX_FUTURE_SECONDS",
    "MAX_TIMESTAMP",
    "Cosignature",
    "CosignatureSigner",
    "CosignatureVerifier",
    "cosignature_key_id",
    "generate_cosigner",
    "signed_message",
    "verify_cosignatures",
]

ALG_COSIGNATURE_V1 = 0x04
"""Signature type byte of Ed25519 ``cosignature/v1`` in C2SP signed-note."""

MAX_TIMESTAMP = (1 << 63) - 1
"""Largest timestamp a cosignature may carry (the spec's MUST)."""

MAX_FUTURE_SECONDS = 600
"""How far past the verifier's clock a cosignature's timestamp may be before it is refused."""

_SIG_SIZE = 8 + 64
_HEX8 = re.compile(r"[0-9a-f]{8}")
_VKEY_FORM = "`<name>+<8 lowercase hex key id>+base64(0x04 || 32-byte Ed25519 public key)`"
_SKEY_FORM = "`PRIVATE+KEY+<name>+<8 lowercase hex key id>+base64(0x04 || 32-byte seed)`"


def cosignature_key_id(name: str, public_key: bytes) -> int:
    """Return the key id of an Ed25519 cosigner: SHA-256(name || 0x0A || 0x04 || key)[:4].

    Args:
        name: The cosigner's name.
        public_key: Its 32-byte Ed25519 public key.

    Returns:
        The key id as an unsigned 32-bit integer.
    """
    digest = hashlib.sha256(
        name.encode() + b"\n" + bytes([ALG_COSIGNATURE_V1]) + public_key
    ).digest()
    return int.from_bytes(digest[:4], "big")


def signed_message(timestamp: int, text: bytes) -> bytes:
    """The bytes an Ed25519 ``cosignature/v1`` signs: header, time line, checkpoint text.

    Args:
        timestamp: POSIX seconds in ``[0, 2**63)``.
        text: The checkpoint note text, ending in a newline, without signature lines.

    Returns:
        ``b"cosignature/v1\\ntime <timestamp>\\n" + text``.

    Raises:
        ValueError: the timestamp is out of range.
    """
    if not isinstance(timestamp, int) or not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError(f"timestamp `{timestamp!r}` is not an integer in `[0, 2**63)`")
    return b"cosignature/v1\ntime %d\n" % timestamp + text


def _check_name(name: object, where: str) -> str:
    if not isinstance(name, str) or not valid_key_name(name):
        raise InputError(
            "cosigner name is malformed",
            where=where,
            accepted="a non-empty name without spaces, `+` or control characters",
        )
    return name


class CosignatureVerifier:
    """A cosigner's public key: its name, key id (type ``0x04``) and Ed25519 key."""

    __slots__ = ("_key", "_key_id", "_name", "_public")

    def __init__(self, name: str, public_key: bytes) -> None:
        """Make a verifier for cosigner ``name`` and its raw 32-byte Ed25519 public key.

        Raises:
            InputError: the name or the key is malformed.
        """
        self._name = _check_name(name, "cosigner key name")
        if type(public_key) is not bytes or len(public_key) != 32:
            raise InputError("public key is malformed", where="cosigner key", accepted="32 bytes")
        self._key = Ed25519PublicKey.from_public_bytes(public_key)
        self._public = public_key
        self._key_id = cosignature_key_id(name, public_key)

    @classmethod
    def from_string(cls, vkey: str) -> CosignatureVerifier:
        """Parse ``<name>+<hex key id>+base64(0x04 || key)`` (or a ``0x01`` note key).

        Args:
            vkey: The verifier key string.

        Returns:
            The verifier.

        Raises:
            InputError: the string is malformed, names another signature type,
                or its key id does not match its name, type and key.
        """
        parts = vkey.split("+", 2) if isinstance(vkey, str) else []
        if len(parts) != 3 or not _HEX8.fullmatch(parts[1]):
            raise InputError("cosigner key is malformed", where="cosigner key", accepted=_VKEY_FORM)
        name, hex_id, b64 = parts
        where = f"cosigner key `{name}`" if valid_key_name(name) else "cosigner key"
        raw = canonical_b64decode(b64)
        if raw is None or len(raw) != 33:
            raise InputError("key material is malformed", where=where, accepted=_VKEY_FORM)
        if raw[0] not in (ALG_COSIGNATURE_V1, ALG_ED25519):
            raise InputError(
                f"signature type `0x{raw[0]:02x}` is not supported",
                where=where,
                accepted="`0x04` (cosignature/v1), or `0x01` read as its cosigner key",
            )
        verifier = cls(name, raw[1:])
        claimed = verifier.key_id if raw[0] == ALG_COSIGNATURE_V1 else key_id(name, raw[1:])
        if claimed != int(hex_id, 16):
            raise InputError(
                f"key id `{hex_id}` does not match the key (`{claimed:08x}`)",
                where=where,
                accepted="the key id of the name, type and key",
            )
        return verifier

    @property
    def name(self) -> str:
        """The cosigner's name."""
        return self._name

    @property
    def key_id(self) -> int:
        """The 32-bit key id its cosignature lines carry."""
        return self._key_id

    @property
    def vkey(self) -> str:
        """The verifier key string, type ``0x04``."""
        material = base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + self._public).decode()
        return f"{self._name}+{self._key_id:08x}+{material}"

    def verify(self, text: bytes, signature: bytes) -> int:
        """Check a ``timestamp || signature`` (the line's bytes after the key id) over ``text``.

        Args:
            text: The checkpoint note text.
            signature: 8-byte big-endian timestamp then the 64-byte Ed25519 signature.

        Returns:
            The cosignature's timestamp.

        Raises:
            VerificationError: wrong length, timestamp out of range, or a bad signature.
        """
        who = f"`{self._name}+{self._key_id:08x}`"
        if type(signature) is not bytes or len(signature) != _SIG_SIZE:
            raise VerificationError(
                f"cosignature by {who} is not a timestamp and an Ed25519 signature",
                expected=_SIG_SIZE,
                calculated=len(signature) if isinstance(signature, bytes) else None,
            )
        timestamp = int.from_bytes(signature[:8], "big")
        if timestamp > MAX_TIMESTAMP:
            raise VerificationError(
                f"cosignature by {who} has timestamp `{timestamp}` above 2**63 - 1",
                expected=MAX_TIMESTAMP,
                calculated=timestamp,
            )
        try:
            self._key.verify(signature[8:], signed_message(timestamp, text))
        except InvalidSignature:
            raise VerificationError(
                f"cosignature by {who} does not verify",
                expected=self.vkey,
                calculated=base64.b64encode(signature).decode(),
            ) from None
        return timestamp

    def __eq__(self, other: object) -> bool:
        """Verifiers are equal when name and public key are."""
        if not isinstance(other, CosignatureVerifier):
            return NotImplemented
        return (self._name, self._public) == (other._name, other._public)

    def __hash__(self) -> int:
        """Hash of name and public key."""
        return hash((self._name, self._public))

    def __repr__(self) -> str:
        """Show the verifier key string."""
        return f"CosignatureVerifier({self.vkey!r})"


class CosignatureSigner:
    """A cosigner's Ed25519 key (a witness's). Its repr never shows the private key."""

    __slots__ = ("_key", "_key_id", "_name", "_public")

    def __init__(self, name: str, seed: bytes) -> None:
        """Make a signer for cosigner ``name`` from a 32-byte Ed25519 seed.

        Raises:
            InputError: the name or the seed is malformed.
        """
        self._name = _check_name(name, "cosigner key name")
        if type(seed) is not bytes or len(seed) != 32:
            raise InputError("seed is malformed", where="cosigner key", accepted="32 bytes")
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self._public = self._key.public_key().public_bytes_raw()
        self._key_id = cosignature_key_id(name, self._public)

    @classmethod
    def from_string(cls, skey: str) -> CosignatureSigner:
        """Parse ``PRIVATE+KEY+<name>+<hex key id>+base64(0x04 || seed)``.

        Args:
            skey: The signer key string (secret; never echoed in errors).

        Returns:
            The signer.

        Raises:
            InputError: the string is malformed, of another type, or its key id is wrong.
        """
        parts = skey.split("+", 4) if isinstance(skey, str) else []
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"] or not _HEX8.fullmatch(parts[3]):
            raise InputError("cosigner signer key is malformed", accepted=_SKEY_FORM)
        name, hex_id, b64 = parts[2:]
        raw = canonical_b64decode(b64)
        if raw is None or len(raw) != 33 or raw[0] != ALG_COSIGNATURE_V1:
            raise InputError("cosigner signer key material is malformed", accepted=_SKEY_FORM)
        signer = cls(name, raw[1:])
        if signer.key_id != int(hex_id, 16):
            raise InputError(
                f"key id `{hex_id}` does not match the key",
                accepted="the key id of the name and derived public key",
            )
        return signer

    @property
    def name(self) -> str:
        """The cosigner's name."""
        return self._name

    @property
    def key_id(self) -> int:
        """The 32-bit key id (type ``0x04``)."""
        return self._key_id

    def verifier(self) -> CosignatureVerifier:
        """Return the matching verifier."""
        return CosignatureVerifier(self._name, self._public)

    def cosign(self, text: bytes, timestamp: int) -> str:
        """Cosign checkpoint note ``text`` at ``timestamp``; return the signature line.

        The caller states what the cosignature means: that it verified the
        checkpoint consistent with everything it saw of the log before.

        Args:
            text: The checkpoint note text (ending in a newline, no signature lines).
            timestamp: POSIX seconds in ``[0, 2**63)``.

        Returns:
            ``— <name> base64(key id || timestamp || signature)`` and a newline.

        Raises:
            ValueError: the timestamp is out of range or the text does not end in a newline.
        """
        if not text.endswith(b"\n"):
            raise ValueError("a checkpoint note text ends in a newline")
        sig = self._key.sign(signed_message(timestamp, text))
        raw = self._key_id.to_bytes(4, "big") + timestamp.to_bytes(8, "big") + sig
        return f"— {self._name} {base64.b64encode(raw).decode()}\n"

    def __repr__(self) -> str:
        """Show name and key id only."""
        return f"CosignatureSigner(name={self._name!r}, key_id={self._key_id:08x})"


def generate_cosigner(name: str) -> tuple[str, str]:
    """Generate a fresh cosigner key pair for ``name``.

    Args:
        name: The cosigner's name (a schema-less URL, e.g. ``witness.example/w1``).

    Returns:
        ``(skey, vkey)``: the secret signer key string and the verifier key string.

    Raises:
        InputError: ``name`` is malformed.
    """
    _check_name(name, "cosigner key name")
    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    signer = CosignatureSigner(name, seed)
    material = base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + seed).decode()
    return f"PRIVATE+KEY+{name}+{signer.key_id:08x}+{material}", signer.verifier().vkey


@dataclass(frozen=True, slots=True)
class Cosignature:
    """A verified cosignature: by whom (verifier key string) and when (POSIX seconds)."""

    vkey: str
    timestamp: int


def _index(witnesses: Iterable[CosignatureVerifier]) -> dict[tuple[str, int], CosignatureVerifier]:
    known: dict[tuple[str, int], CosignatureVerifier] = {}
    for w in witnesses:
        if not isinstance(w, CosignatureVerifier):
            raise TypeError(f"witnesses must be CosignatureVerifier, not `{type(w).__name__}`")
        if known.setdefault((w.name, w.key_id), w) != w:
            raise ConfigError(f"two cosigner keys share name and key id `{w.name}+{w.key_id:08x}`")
    return known


def verify_cosignatures(
    note: str | bytes,
    witnesses: Iterable[CosignatureVerifier],
    *,
    minimum: int,
    now: int | None = None,
) -> tuple[Cosignature, ...]:
    """Check the cosignatures on a checkpoint note; at least ``minimum`` distinct witnesses.

    The note's own (log) signature is not checked here: the caller verifies it
    on the same note (:func:`~sop_verified.tools.checkpoint.open_checkpoint`).

    Args:
        note: The checkpoint as a signed note, with its cosignature lines (untrusted).
        witnesses: The cosigners the caller trusts.
        minimum: How many distinct trusted cosigners must have cosigned (0 checks nothing).
        now: The verifier's clock in POSIX seconds (default: the wall clock); a
            timestamp more than :data:`MAX_FUTURE_SECONDS` past it is refused.

    Returns:
        One verified cosignature per trusted cosigner that cosigned (the latest
        timestamp when one cosigned more than once).

    Raises:
        InputError: the note is malformed, or ``minimum`` is negative or above the
            number of trusted cosigners.
        VerificationError: a trusted cosigner's line does not verify, carries a
            future timestamp, or fewer than ``minimum`` trusted cosigners signed.
        ConfigError: two different witness keys share a name and key id.
    """
    known = _index(witnesses)
    if not isinstance(minimum, int) or not 0 <= minimum <= len(known):
        raise InputError(
            f"a quorum of `{minimum}` cosigners cannot be met by `{len(known)}` trusted ones",
            accepted=f"0 to {len(known)}",
        )
    clock = int(time.time()) if now is None else now
    text, sigs = parse_note(note)
    found: dict[str, Cosignature] = {}
    for sig in sigs:
        witness = known.get((sig.name, sig.key_id))
        if witness is None:
            continue  # the log's signature, another kind of line, an unknown cosigner
        timestamp = witness.verify(text, sig.signature)
        if timestamp > clock + MAX_FUTURE_SECONDS:
            raise VerificationError(
                f"cosignature by `{witness.vkey}` is dated `{timestamp}`, in the future",
                expected=f"at most {clock + MAX_FUTURE_SECONDS}",
                calculated=timestamp,
            )
        held = found.get(witness.vkey)
        if held is None or held.timestamp < timestamp:
            found[witness.vkey] = Cosignature(witness.vkey, timestamp)
    if len(found) < minimum:
        raise VerificationError(
            f"`{len(found)}` trusted cosigners cosigned the checkpoint, `{minimum}` required",
            expected=sorted(w.vkey for w in known.values()),
            calculated=sorted(found),
        )
    return tuple(found.values())
