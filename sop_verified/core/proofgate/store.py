"""The write-once verdict store (INV-3): its port, its record and an in-memory backend.

A verdict is recorded under the obligation digest, once. The record binds the
obligation text (so it can be replayed and so a record cannot be moved to
another digest), the verdict, its reason and evidence, and the solver
identity that produced it. storage/ implements :class:`VerdictStore`
structurally (SQLite today) without importing core.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from sop_verified.core.contracts import ensure
from sop_verified.core.obligations import Verdict, VerdictResult
from sop_verified.errors import IntegrityError
from sop_verified.tools.canonical import canonical_json

__all__ = [
    "InMemoryVerdictStore",
    "VerdictRecord",
    "VerdictStore",
    "obligation_digest",
]

_FORMATS = ("smt2", "json")


@ensure(lambda result: result.startswith("sha256:") and len(result) == 71, helper=True)
def obligation_digest(fmt: str, source: str) -> str:
    """``sha256:<hex>`` of the RFC 8785 canonical JSON ``{"format": fmt, "source": source}``.

    orjson's output for an object of two strings with sorted keys is byte-for-byte
    RFC 8785 (the tests cross-check it against :func:`canonical_json`); text that
    is not valid UTF-8 (lone surrogates) cannot be canonical JSON, so it is
    hashed under a separate domain tag and can only ever be REJECTED.

    Args:
        fmt: the obligation format (``smt2`` or ``json``).
        source: the obligation text, exactly as submitted.

    Returns:
        The digest.
    """
    return _digest_of(fmt, source)


_CACHED_SOURCE = 4096  # derived obligations are short and asked for on every operation


def _digest_of(fmt: str, source: str) -> str:
    if len(source) <= _CACHED_SOURCE:
        return _cached_digest(fmt, source)
    return _digest_uncached(fmt, source)


@functools.lru_cache(maxsize=2048)
def _cached_digest(fmt: str, source: str) -> str:
    return _digest_uncached(fmt, source)


def _digest_uncached(fmt: str, source: str) -> str:
    try:
        data = orjson.dumps({"format": fmt, "source": source})
    except TypeError:
        data = b"sop-invalid-utf8\x00" + fmt.encode("utf-8", "surrogatepass") + b"\x00"
        data += source.encode("utf-8", "surrogatepass")
    return "sha256:" + hashlib.sha256(data).hexdigest()


class VerdictStore(Protocol):
    """Durable, write-once verdicts by obligation digest (INV-3).

    Every method that fails raises :class:`~sop_verified.errors.StorageError`;
    the gate turns that into UNKNOWN (INV-2).
    """

    def get(self, digest: str) -> bytes | None:
        """The record stored under ``digest``, or None."""

    def put_once(self, digest: str, record: bytes) -> bytes:
        """Store ``record`` under ``digest`` unless one exists; return the record now stored.

        An existing record is never replaced: the caller compares what comes back.
        """

    def digests(self) -> list[str]:
        """Every digest with a record (for replay)."""


@dataclass(frozen=True, slots=True)
class VerdictRecord:
    """One recorded verdict, with the obligation it is about and the solver that gave it."""

    format: str
    source: str
    verdict: Verdict
    reason: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    solver: dict[str, Any] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        """The obligation digest this record is about."""
        return _digest_of(self.format, self.source)

    @ensure(lambda result: result.startswith(b"{"))
    def to_bytes(self) -> bytes:
        """Canonical JSON (RFC 8785) of the record."""
        return canonical_json(
            {
                "format": self.format,
                "source": self.source,
                "verdict": str(self.verdict),
                "reason": self.reason,
                "evidence": self.evidence,
                "solver": self.solver,
            }
        )

    @ensure(lambda self, result: result.verdict is self.verdict)
    def result(self) -> VerdictResult:
        """The verdict as the gate returns it."""
        return VerdictResult(self.verdict, self.digest, self.reason, self.evidence)

    @classmethod
    def from_bytes(cls, data: bytes, *, digest: str) -> VerdictRecord:
        """Decode a stored record and check it belongs to ``digest``.

        Args:
            data: the stored bytes.
            digest: the key it was stored under.

        Returns:
            The record.

        Raises:
            IntegrityError: the bytes are not a record, or the record is about
                another obligation (expected and found digests in the message).
        """
        try:
            raw = orjson.loads(data)
            record = cls(
                raw["format"],
                raw["source"],
                Verdict(raw["verdict"]),
                raw["reason"],
                raw["evidence"],
                raw["solver"],
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(
                f"verdict record under `{digest}` is unreadable: {type(exc).__name__}"
            ) from None
        if record.format not in _FORMATS or not isinstance(record.evidence, dict):
            raise IntegrityError(f"verdict record under `{digest}` is malformed")
        found = record.digest
        if found != digest:
            raise IntegrityError(f"verdict record stored under `{digest}` is about `{found}`")
        return record


class InMemoryVerdictStore:
    """A thread-safe, write-once, in-process :class:`VerdictStore` (tests and the CLI)."""

    def __init__(self) -> None:
        """An empty store."""
        self._records: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> bytes | None:
        """The record stored under ``digest``, or None."""
        return self._records.get(digest)

    @ensure(lambda self, digest, result: self._records.get(digest) == result)
    def put_once(self, digest: str, record: bytes) -> bytes:
        """Store ``record`` unless ``digest`` has one; return the record now stored (INV-3).

        Args:
            digest: the obligation digest.
            record: the canonical record bytes.

        Returns:
            The stored record: ``record`` if it is new, else the earlier one, unchanged.
        """
        with self._lock:
            return self._records.setdefault(digest, record)  # spec: INV-3

    def digests(self) -> list[str]:
        """Every digest with a record, sorted."""
        with self._lock:
            return sorted(self._records)
