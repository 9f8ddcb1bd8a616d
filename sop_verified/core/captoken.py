"""Capability tokens: canonical claims under a keyed MAC (HMAC-SHA256).

Token format (ASCII, at most :data:`MAX_TOKEN_BYTES` characters)::

    sopcap1.<key id>.<base64url(claims)>.<base64url(mac)>

- ``sopcap1`` names the format and its version; anything else is malformed.
- ``<key id>`` (1-32 characters of ``A-Za-z0-9_-``) selects the MAC key, so
  keys can rotate: a registry mints with one key and verifies with it and
  with any retired keys it still accepts. An unknown key id is a forgery.
- ``<claims>`` is the RFC 8785 canonical JSON of the capability's claims,
  base64url without padding (RFC 4648 section 5), canonically encoded.
- ``<mac>`` is HMAC-SHA256 (RFC 2104) under that key over the signing input
  ``sopcap1.<key id>.<base64url(claims)>``, i.e. everything before the last
  dot, so the version and the key id are authenticated too; 43 characters.

Parsing is strict and checks the MAC, in constant time, *before* decoding
the claims: nothing an attacker wrote is interpreted until it is known to be
ours. The ADR docs/adr/0002-capability-tokens.md gives the reasons.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from types import MappingProxyType

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac

from sop_verified.core.contracts import ensure, invariant, require
from sop_verified.errors import CapabilityError

__all__ = ["KEY_ID_RE", "MAX_TOKEN_BYTES", "MIN_KEY_BYTES", "TOKEN_PREFIX", "TokenCodec"]

TOKEN_PREFIX = "sopcap1"  # noqa: S105 - a format tag, not a password
MAX_TOKEN_BYTES = 8 * 1024
MIN_KEY_BYTES = 32
KEY_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")

_MAC_B64_LEN = 43  # 32 bytes, base64url without padding
_TOKEN_RE = re.compile(
    rf"({re.escape(TOKEN_PREFIX)}\.([A-Za-z0-9_-]{{1,32}})\.([A-Za-z0-9_-]+))"
    rf"\.([A-Za-z0-9_-]{{{_MAC_B64_LEN}}})"
)
_ACCEPTED = (
    f"`{TOKEN_PREFIX}.<key id>.<base64url claims>.<base64url mac>`, "
    f"at most {MAX_TOKEN_BYTES} ASCII characters"
)


def _malformed(message: str) -> CapabilityError:
    return CapabilityError(f"{message}; at `token`; accepted: {_ACCEPTED}", code="malformed")


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str, part: str) -> bytes:
    """Decode unpadded base64url, refusing any non-canonical spelling."""
    if len(text) % 4 == 1:
        raise _malformed(f"token {part} is not base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64encode(data) != text:
        raise _malformed(f"token {part} is not canonical base64url")
    return data


def _mac(key: bytes, signing_input: bytes) -> hmac.HMAC:
    ctx = hmac.HMAC(key, hashes.SHA256())
    ctx.update(signing_input)
    return ctx


def _check_keys(key_id: str, key: bytes, verify_keys: Mapping[str, bytes]) -> dict[str, bytes]:
    keys = {key_id: key, **verify_keys}
    if verify_keys.get(key_id, key) != key:
        raise ValueError(f"key id `{key_id}` names two different keys")
    for kid, k in keys.items():
        if not isinstance(kid, str) or KEY_ID_RE.fullmatch(kid) is None:
            raise ValueError(f"key id `{kid!s}` is not 1-32 characters of `A-Za-z0-9_-`")
        if not isinstance(k, bytes) or len(k) < MIN_KEY_BYTES:
            raise ValueError(f"mac key `{kid}` must be at least {MIN_KEY_BYTES} random bytes")
    return keys


@invariant(lambda self: self.key_id in self._keys, "the minting key is a verification key")
class TokenCodec:
    """Mints and opens capability tokens under HMAC-SHA256 keys selected by key id."""

    __slots__ = ("_keys", "key_id")

    def __init__(
        self, key_id: str, key: bytes, verify_keys: Mapping[str, bytes] | None = None
    ) -> None:
        """Hold the minting key and the keys accepted for verification.

        Args:
            key_id: id of the minting key, written into every token.
            key: the minting key, at least :data:`MIN_KEY_BYTES` random bytes.
            verify_keys: retired keys (key id to key) still accepted when opening.

        Raises:
            ValueError: a key id is malformed, a key is too short, or one id names two keys.
        """
        self._keys = MappingProxyType(_check_keys(key_id, key, verify_keys or {}))
        self.key_id = key_id

    @require(lambda claims: len(claims) > 0, "claims are not empty")
    @ensure(lambda result: result.startswith(TOKEN_PREFIX + "."), "the token has the format prefix")
    def mint(self, claims: bytes) -> str:
        """Return the token for ``claims`` under the minting key.

        Args:
            claims: the canonical claims bytes.

        Returns:
            ``sopcap1.<key id>.<claims>.<mac>``.

        Raises:
            ValueError: the token would exceed :data:`MAX_TOKEN_BYTES`.
        """
        signing_input = f"{TOKEN_PREFIX}.{self.key_id}.{_b64encode(claims)}"
        mac = _mac(self._keys[self.key_id], signing_input.encode("ascii")).finalize()
        token = f"{signing_input}.{_b64encode(mac)}"
        if len(token) > MAX_TOKEN_BYTES:
            raise ValueError(f"token would be {len(token)} characters, over {MAX_TOKEN_BYTES}")
        return token

    @ensure(lambda result: len(result[1]) > 0, "a verified token carries claims")
    def open(self, token: object) -> tuple[str, bytes]:
        """Verify ``token`` and return its key id and canonical claims bytes.

        Args:
            token: the untrusted token string.

        Returns:
            ``(key id, claims bytes)``; the claims are authentic but not yet parsed.

        Raises:
            CapabilityError: code ``malformed`` (not a string, oversized, wrong
                structure or encoding) or ``forged`` (unknown key id, bad MAC).
        """
        return _open(self._keys, token)


def _open(keys: Mapping[str, bytes], token: object) -> tuple[str, bytes]:
    if not isinstance(token, str):
        raise _malformed(f"token must be a string, got `{type(token).__name__}`")
    if len(token) > MAX_TOKEN_BYTES:
        raise _malformed(f"token is {len(token)} characters long")
    found = _TOKEN_RE.fullmatch(token)
    if found is None:
        raise _malformed("token does not have the capability token structure")
    signing_input, key_id, claims_b64, mac_b64 = found.groups()
    key = keys.get(key_id)
    if key is None:
        raise CapabilityError(f"token names unknown key id `{key_id}`", code="forged")
    mac = _b64decode(mac_b64, "mac")
    try:
        _mac(key, signing_input.encode("ascii")).verify(mac)  # constant-time comparison
    except InvalidSignature:
        raise CapabilityError(
            f"token MAC does not verify under key `{key_id}`", code="forged"
        ) from None
    claims = _b64decode(claims_b64, "claims")
    if not claims:
        raise _malformed("token claims are empty")
    return key_id, claims
