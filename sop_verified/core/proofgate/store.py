"""The write-once verdict store (INV-3): its port, its record and an in-memory backend.

A verdict is recorded under the obligation digest, once. The record binds the
obligation text (so it can be replayed and so a record cannot be moved to
another digest), the verdict, its reason and evidence, and says how it was
reached: the z3 identity that decided it and, when cvc5 re-checked it, the
cross-check's evidence (cvc5's identity, its verdict, whether it agreed).
storage/ implements :class:`VerdictStore` structurally (SQLite today) without
importing core.

Whether a class of obligations needs the cross-check is chosen by the
obligation's id, but the record is keyed by its content, so the same text may
first be recorded PROVED by z3 alone (under a class that does not need cvc5).
That record never changes (INV-3). When a class that needs the cross-check
later confirms it, the confirmation is a record of its own, written once under
:func:`cross_checked_key` of the digest: the same obligation, verdict and z3
identity, plus the agreeing cross-check. A record carries a cross-check only
if both solvers answered PROVED; records written before the field existed
have none, and so never satisfy a class that needs one.
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
    "CrossCheck",
    "InMemoryVerdictStore",
    "VerdictRecord",
    "VerdictStore",
    "cross_checked_key",
    "obligation_digest",
]

_FORMATS = ("smt2", "json")
_CROSS_CHECK_KEYS = frozenset({"solver", "verdict", "agreed"})
_CROSS_CHECKED_TAG = b"sop/verdict/cross-checked/v1\x00"


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


@ensure(lambda digest, result: result.startswith("sha256:") and result != digest, helper=True)
def cross_checked_key(digest: str) -> str:
    """The key of the record confirming, with the cross-check, the PROVED verdict for ``digest``.

    A digest of its own (domain-separated), so it has the shape of every other
    key: the store, its seal and the verdict attestations treat it as one more
    write-once record.

    Args:
        digest: the obligation digest.

    Returns:
        ``sha256:<hex>`` of the tag and the digest.
    """
    return "sha256:" + hashlib.sha256(_CROSS_CHECKED_TAG + digest.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class CrossCheck:
    """The second solver's evidence on a verdict: who it was, what it said, whether it agreed.

    Attributes:
        solver: the second solver's identity (``name``, ``version``, ``rlimit``, ``params``).
        verdict: its answer as a verdict (PROVED for ``unsat``).
        agreed: whether it gave the verdict z3 gave.
    """

    solver: dict[str, Any]
    verdict: Verdict
    agreed: bool

    def __post_init__(self) -> None:
        name, version = self.solver.get("name"), self.solver.get("version")
        if not isinstance(name, str) or not isinstance(version, str) or not name or not version:
            raise ValueError(f"a cross-check names its solver and version, found `{self.solver}`")
        if not isinstance(self.verdict, Verdict) or not isinstance(self.agreed, bool):
            raise ValueError("a cross-check holds a verdict and a yes/no agreement")

    @property
    def confirms(self) -> bool:
        """Whether cvc5 answered PROVED and agreed: the only evidence a cross-check class takes."""
        return self.solver.get("name") == "cvc5" and self.verdict is Verdict.PROVED and self.agreed

    @ensure(lambda self, result: result["agreed"] is self.agreed)
    def to_dict(self) -> dict[str, Any]:
        """The JSON form kept in the record."""
        return {"solver": self.solver, "verdict": str(self.verdict), "agreed": self.agreed}

    @classmethod
    def from_dict(cls, raw: Any) -> CrossCheck:
        """Read the JSON form back.

        Raises:
            ValueError: not exactly ``solver``, ``verdict`` and ``agreed`` of the right types.
        """
        if not isinstance(raw, dict) or set(raw) != _CROSS_CHECK_KEYS:
            raise ValueError("a cross-check is an object of `solver`, `verdict` and `agreed`")
        if not isinstance(raw["solver"], dict):
            raise ValueError("a cross-check's `solver` is an object")
        return cls(raw["solver"], Verdict(raw["verdict"]), raw["agreed"])


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
    """One recorded verdict: the obligation it is about, and how it was reached.

    Attributes:
        format: the obligation format.
        source: the obligation text.
        verdict: the verdict.
        reason: its reason.
        evidence: z3's evidence (unsat core or counterexample).
        solver: z3's identity (name, version, rlimit, parameters, engines).
        cross_check: cvc5's evidence when it re-checked the verdict, else None
            (also for every record written before the field existed).
    """

    format: str
    source: str
    verdict: Verdict
    reason: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    solver: dict[str, Any] = field(default_factory=dict)
    cross_check: CrossCheck | None = None

    @property
    def digest(self) -> str:
        """The obligation digest this record is about."""
        return _digest_of(self.format, self.source)

    @property
    def cross_checked(self) -> bool:
        """PROVED by z3 and confirmed by cvc5: what a class that needs the cross-check accepts."""
        return (
            self.verdict is Verdict.PROVED
            and self.cross_check is not None
            and self.cross_check.confirms
        )

    @property
    def solvers(self) -> tuple[tuple[str, str], ...]:
        """``(name, version)`` of each solver that ran: z3, then cvc5 when it re-checked."""
        ran = [(str(self.solver.get("name", "z3")), str(self.solver.get("version", "")))]
        if self.cross_check is not None:
            cc = self.cross_check.solver
            ran.append((str(cc["name"]), str(cc["version"])))
        return tuple(ran)

    @ensure(lambda result: result.startswith(b"{"))
    def to_bytes(self) -> bytes:
        """Canonical JSON (RFC 8785) of the record.

        ``cross_check`` is written only when there is one: a record without it
        is byte-for-byte what was written before the field existed, so absent
        is its one encoding (an explicit ``null`` is refused on reading).
        """
        body: dict[str, Any] = {
            "format": self.format,
            "source": self.source,
            "verdict": str(self.verdict),
            "reason": self.reason,
            "evidence": self.evidence,
            "solver": self.solver,
        }
        if self.cross_check is not None:
            body["cross_check"] = self.cross_check.to_dict()
        return canonical_json(body)

    @ensure(lambda self, result: result.verdict is self.verdict)
    def result(self) -> VerdictResult:
        """The verdict as the gate returns it (the cross-check shown in its evidence)."""
        evidence = self.evidence
        if self.cross_check is not None:
            evidence = {**evidence, "cross_check": self.cross_check.to_dict()}
        return VerdictResult(self.verdict, self.digest, self.reason, evidence)

    @classmethod
    def from_bytes(cls, data: bytes, *, digest: str) -> VerdictRecord:
        """Decode a stored record and check it belongs to the key it was stored under.

        A record belongs under its obligation digest, or, if it carries an
        agreeing cross-check, under :func:`cross_checked_key` of that digest.

        Args:
            data: the stored bytes.
            digest: the key it was stored under.

        Returns:
            The record.

        Raises:
            IntegrityError: the bytes are not a record, the record is about
                another obligation (expected and found digests in the message),
                or it sits under the cross-checked key without the cross-check.
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
                CrossCheck.from_dict(raw["cross_check"]) if "cross_check" in raw else None,
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise IntegrityError(
                f"verdict record under `{digest}` is unreadable: {type(exc).__name__}"
            ) from None
        if (
            record.format not in _FORMATS
            or not isinstance(record.evidence, dict)
            or not isinstance(record.solver, dict)
        ):
            raise IntegrityError(f"verdict record under `{digest}` is malformed")
        found = record.digest
        if digest == found:
            return record
        if digest != cross_checked_key(found):
            raise IntegrityError(f"verdict record stored under `{digest}` is about `{found}`")
        if not record.cross_checked:  # spec: INV-1 — only both solvers' PROVED confirms
            raise IntegrityError(
                f"the cross-checked verdict record for `{found}` does not carry an agreeing "
                f"cvc5 PROVED (found {record.verdict}, cross-check "
                f"`{None if record.cross_check is None else record.cross_check.to_dict()}`)"
            )
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
