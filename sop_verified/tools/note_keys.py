"""C2SP signed-note keys (c2sp.org/signed-note): Ed25519 signers and verifiers.

Key strings are ``<name>+<hex key id>+base64(0x01 || pubkey)`` for verifiers
and ``PRIVATE+KEY+<name>+<hex key id>+base64(0x01 || seed)`` for signers,
byte-compatible with golang.org/x/mod/sumdb/note. The key id is the first 4
bytes (big-endian) of ``SHA-256(name || 0x0A || 0x01 || pubkey)``. Parsing is
stricter than the Go package on purpose: base64 must be canonical and key ids
lowercase hex (docs/adr/0003-merkle-and-notes-by-hand.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sop_verified.errors import InputError, VerificationError

__all__ = [
    "ALG_ED25519",
    "Signer",
    "Verifier",
    "canonical_b64decode",
    "generate",
    "key_id",
    "valid_key_name",
]

ALG_ED25519 = 0x01
"""Signature type byte of Ed25519 in C2SP signed-note."""

_HEX8 = re.compile(r"[0-9a-f]{8}")
_VKEY_FORM = "`<name>+<8 lowercase hex key id>+base64(0x01 || 32-byte Ed25519 public key)`"
_SKEY_FORM = "`PRIVATE+KEY+<name>+<8 lowercase hex key id>+base64(0x01 || 32-byte seed)`"
_NAME_RULE = "a non-empty name without spaces, `+` or control characters"


def key_id(name: str, public_key: bytes) -> int:
    """Return the C2SP key id of an Ed25519 key: SHA-256(name || 0x0A || 0x01 || key)[:4].

    Args:
        name: The key name.
        public_key: The 32-byte Ed25519 public key.

    Returns:
        The key id as an unsigned 32-bit integer.
    """
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def valid_key_name(name: str) -> bool:
    """Return whether ``name`` is a valid key name.

    Args:
        name: The candidate key name.

    Returns:
        True when it is non-empty and has no Unicode space, ``+`` or control character.
    """
    return bool(name) and not any(c.isspace() or c == "+" or c < " " for c in name)


def _check_name(name: object, where: str) -> str:
    if not isinstance(name, str) or not valid_key_name(name):
        raise InputError("key name is malformed", where=where, accepted=_NAME_RULE)
    try:
        name.encode()
    except UnicodeEncodeError:
        raise InputError("key name is not UTF-8", where=where, accepted=_NAME_RULE) from None
    return name


def canonical_b64decode(text: str | bytes) -> bytes | None:
    """Decode strict, canonical standard base64 (RFC 4648 section 4, padded).

    Args:
        text: The encoded text.

    Returns:
        The bytes, or None when ``text`` is not the canonical encoding of any bytes.
    """
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    expected = text.encode() if isinstance(text, str) else text
    return raw if base64.b64encode(raw) == expected else None


def _key_material(b64: str, size: int, where: str, accepted: str) -> bytes:
    raw = canonical_b64decode(b64)
    if raw is None or len(raw) != 1 + size:
        raise InputError("key material is malformed", where=where, accepted=accepted)
    if raw[0] != ALG_ED25519:
        raise InputError(
            f"signature type `0x{raw[0]:02x}` is not supported", where=where, accepted="`0x01`"
        )
    return raw[1:]


class Verifier:
    """An Ed25519 note verifier: a key name, its key id and its public key."""

    __slots__ = ("_key", "_key_id", "_name", "_public")

    def __init__(self, name: str, public_key: bytes) -> None:
        """Make a verifier for ``name`` and a raw 32-byte Ed25519 public key.

        Args:
            name: The key name.
            public_key: The raw Ed25519 public key.

        Raises:
            InputError: the name or the key is malformed.
        """
        self._name = _check_name(name, "verifier key name")
        if type(public_key) is not bytes or len(public_key) != 32:
            raise InputError("public key is malformed", where="verifier key", accepted="32 bytes")
        self._key = Ed25519PublicKey.from_public_bytes(public_key)
        self._public = public_key
        self._key_id = key_id(name, public_key)

    @classmethod
    def from_string(cls, vkey: str) -> Verifier:
        """Parse a verifier key string ``<name>+<hex key id>+<base64(0x01 || pubkey)>``.

        Args:
            vkey: The verifier key string.

        Returns:
            The verifier.

        Raises:
            InputError: the string is malformed, names another signature type,
                or its key id does not match its name and key.
        """
        if not isinstance(vkey, str) or vkey.count("+") < 2:
            raise InputError("verifier key is malformed", where="verifier key", accepted=_VKEY_FORM)
        name, hex_id, b64 = vkey.split("+", 2)
        where = f"verifier key `{name}`" if valid_key_name(name) else "verifier key"
        if not _HEX8.fullmatch(hex_id):
            raise InputError(f"key id `{hex_id}` is malformed", where=where, accepted=_VKEY_FORM)
        verifier = cls(name, _key_material(b64, 32, where, _VKEY_FORM))
        if verifier.key_id != int(hex_id, 16):
            raise InputError(
                f"key id `{hex_id}` does not match the key (`{verifier.key_id:08x}`)",
                where=where,
                accepted="the key id of the name and key",
            )
        return verifier

    @property
    def name(self) -> str:
        """The key name."""
        return self._name

    @property
    def key_id(self) -> int:
        """The 32-bit key id."""
        return self._key_id

    @property
    def vkey(self) -> str:
        """The verifier key string."""
        material = base64.b64encode(bytes([ALG_ED25519]) + self._public).decode()
        return f"{self._name}+{self._key_id:08x}+{material}"

    def verify(self, message: bytes, signature: bytes) -> None:
        """Check an Ed25519 ``signature`` (without key id) of ``message``.

        Args:
            message: The signed bytes (a note's text).
            signature: The raw 64-byte signature.

        Raises:
            VerificationError: the signature does not verify.
        """
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            raise VerificationError(
                f"signature by `{self._name}+{self._key_id:08x}` does not verify",
                expected=self.vkey,
                calculated=base64.b64encode(signature).decode(),
            ) from None

    def __eq__(self, other: object) -> bool:
        """Verifiers are equal when name and public key are."""
        if not isinstance(other, Verifier):
            return NotImplemented
        return (self._name, self._public) == (other._name, other._public)

    def __hash__(self) -> int:
        """Hash of name and public key."""
        return hash((self._name, self._public))

    def __repr__(self) -> str:
        """Show the verifier key string."""
        return f"Verifier({self.vkey!r})"


class Signer:
    """An Ed25519 note signer. Its repr never shows the private key."""

    __slots__ = ("_key", "_key_id", "_name", "_public")

    def __init__(self, name: str, seed: bytes) -> None:
        """Make a signer for ``name`` from a 32-byte Ed25519 seed.

        Args:
            name: The key name.
            seed: The raw Ed25519 private key seed (secret).

        Raises:
            InputError: the name or the seed is malformed.
        """
        self._name = _check_name(name, "signer key name")
        if type(seed) is not bytes or len(seed) != 32:
            raise InputError("seed is malformed", where="signer key", accepted="32 bytes")
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self._public = self._key.public_key().public_bytes_raw()
        self._key_id = key_id(name, self._public)

    @classmethod
    def from_string(cls, skey: str) -> Signer:
        """Parse a signer key string ``PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>``.

        Args:
            skey: The signer key string (secret; never echoed in errors).

        Returns:
            The signer.

        Raises:
            InputError: the string is malformed, names another signature type,
                or its key id does not match its name and derived public key.
        """
        parts = skey.split("+", 4) if isinstance(skey, str) else []
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise InputError("signer key is malformed", where="signer key", accepted=_SKEY_FORM)
        name, hex_id, b64 = parts[2:]
        where = f"signer key `{name}`" if valid_key_name(name) else "signer key"
        if not _HEX8.fullmatch(hex_id):
            raise InputError("key id is malformed", where=where, accepted=_SKEY_FORM)
        signer = cls(name, _key_material(b64, 32, where, _SKEY_FORM))
        if signer.key_id != int(hex_id, 16):
            raise InputError(
                f"key id `{hex_id}` does not match the key",
                where=where,
                accepted="the key id of the name and derived public key",
            )
        return signer

    @property
    def name(self) -> str:
        """The key name."""
        return self._name

    @property
    def key_id(self) -> int:
        """The 32-bit key id."""
        return self._key_id

    def verifier(self) -> Verifier:
        """Return the matching verifier."""
        return Verifier(self._name, self._public)

    def sign(self, message: bytes) -> bytes:
        """Sign ``message`` with Ed25519.

        Args:
            message: The bytes to sign (a note's text).

        Returns:
            The raw 64-byte signature, without key id.
        """
        return self._key.sign(message)

    def __repr__(self) -> str:
        """Show name and key id only."""
        return f"Signer(name={self._name!r}, key_id={self._key_id:08x})"


def generate(name: str) -> tuple[str, str]:
    """Generate a fresh Ed25519 key pair for ``name``.

    Args:
        name: The key name (non-empty; no spaces, ``+`` or control characters).

    Returns:
        ``(skey, vkey)``: the secret signer key string and the verifier key string.

    Raises:
        InputError: ``name`` is malformed.
    """
    _check_name(name, "key name")
    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    signer = Signer(name, seed)
    material = base64.b64encode(bytes([ALG_ED25519]) + seed).decode()
    return f"PRIVATE+KEY+{name}+{signer.key_id:08x}+{material}", signer.verifier().vkey
