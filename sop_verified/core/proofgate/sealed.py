"""Sealed verdict records: a keyed MAC over each stored record (INV-3 against a tampered store).

The verdict store is a cache that the gate trusts on a hit, so a record
edited on disk (REFUTED turned into PROVED) would let a false obligation
through. Each record is therefore stored as ``HMAC-SHA256(key, digest ||
record) || record`` and checked, in constant time, on every read; a record
that fails is an :class:`~sop_verified.errors.IntegrityError`: the gate raises
its integrity alarm and answers UNKNOWN, so the request is denied (INV-2).
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sop_verified.core.contracts import ensure, invariant, require
from sop_verified.core.proofgate.store import VerdictStore
from sop_verified.errors import IntegrityError

__all__ = ["SealedVerdictStore", "derive_seal_key"]

_MAC_LEN = 32


@require(lambda master: len(master) >= 32, "a 256-bit master key")
@ensure(lambda result: len(result) == 32)
def derive_seal_key(master: bytes) -> bytes:
    """Derive the verdict-sealing key from a master key (HKDF-SHA256, its own purpose label)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"sop/verdict-seal/v1")
    return hkdf.derive(master)


def _mac(key: bytes, digest: str, record: bytes) -> bytes:
    h = hmac.HMAC(key, hashes.SHA256())
    h.update(digest.encode() + b"\x00" + record)
    return h.finalize()


def _open(key: bytes, digest: str, sealed: bytes) -> bytes:
    tag, record = sealed[:_MAC_LEN], sealed[_MAC_LEN:]
    h = hmac.HMAC(key, hashes.SHA256())
    h.update(digest.encode() + b"\x00" + record)
    try:
        h.verify(tag)  # constant time
    except InvalidSignature:
        raise IntegrityError(  # spec: INV-3 — an altered record is never trusted
            f"the verdict record under `{digest}` fails its seal; the store was altered"
        ) from None
    return record


@invariant(lambda self: len(self._key) == 32)
class SealedVerdictStore:
    """A :class:`VerdictStore` whose records are sealed with a keyed MAC."""

    def __init__(self, inner: VerdictStore, key: bytes) -> None:
        self._inner = inner
        self._key = key

    def get(self, digest: str) -> bytes | None:
        """The record under ``digest`` after its seal verified, or None.

        Raises:
            IntegrityError: the stored record does not carry a valid seal.
        """
        sealed = self._inner.get(digest)
        return None if sealed is None else _open(self._key, digest, sealed)

    @ensure(lambda self, digest, result: self.get(digest) == result, "INV-3: the stored record")
    def put_once(self, digest: str, record: bytes) -> bytes:
        """Seal and store ``record`` unless ``digest`` has one; return the (verified) stored record.

        Raises:
            IntegrityError: the record already stored does not carry a valid seal.
        """
        stored = self._inner.put_once(digest, _mac(self._key, digest, record) + record)
        return _open(self._key, digest, stored)

    def digests(self) -> list[str]:
        """Every digest with a record."""
        return self._inner.digests()
