"""Proof verdicts are attested: each new verdict is logged as a DSSE-signed in-toto statement.

The wrapper sits between the proof gate and its (sealed) verdict store: when
the gate records a verdict for the first time, an in-toto Statement v1 whose
subject is the obligation digest and whose predicate is the verdict record
is signed into a DSSE envelope and appended to the log (issue 4, item 7), so
an auditor can check every verdict offline with the attestation key.

A read-only SOP (a dry run) wires :class:`UnrecordedVerdictStore` instead: the
recorded verdicts still decide (INV-3), and a new one is kept in memory only,
neither stored nor attested.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sop_verified.core.proofgate.store import VerdictStore
from sop_verified.errors import IntegrityError
from sop_verified.nexus.log_service import attest
from sop_verified.tools.attest import PREDICATE_VERDICT
from sop_verified.tools.tlog import TransparencyLog

__all__ = ["AttestingVerdictStore", "UnrecordedVerdictStore"]


class AttestingVerdictStore:
    """A :class:`VerdictStore` that attests and logs each verdict the first time it is stored."""

    def __init__(self, inner: VerdictStore, log: TransparencyLog, key: Ed25519PrivateKey) -> None:
        self._inner = inner
        self._log = log
        self._key = key

    def get(self, digest: str) -> bytes | None:
        """The recorded verdict under ``digest``, or None."""
        return self._inner.get(digest)

    def put_once(self, digest: str, record: bytes) -> bytes:
        """Record the verdict (write-once); a new record is attested and logged.

        Raises:
            StorageError: storing or logging failed (the gate answers UNKNOWN).
        """
        new = self._inner.get(digest) is None
        stored = self._inner.put_once(digest, record)
        if new and stored == record:
            self._attest(digest, record)
        return stored

    def digests(self) -> list[str]:
        """Every digest with a recorded verdict."""
        return self._inner.digests()

    def _attest(self, digest: str, record: bytes) -> None:
        try:
            predicate: dict[str, Any] = json.loads(record)
        except ValueError as exc:
            raise IntegrityError(f"verdict record under `{digest}` is not JSON: {exc}") from None
        hex_digest = digest.removeprefix("sha256:")
        attest(
            self._log,
            self._key,
            "proof_verdict",
            subjects=[(f"obligation:{digest}", hex_digest)],
            predicate_type=PREDICATE_VERDICT,
            predicate=predicate,
        )


class UnrecordedVerdictStore:
    """A :class:`VerdictStore` over the recorded verdicts that records nothing (a dry run).

    A recorded verdict is returned as the inner store has it, so an obligation
    decided before is decided the same way (INV-3); a new verdict is kept in
    this object's memory, write-once too, and is gone when it is.
    """

    def __init__(self, recorded: VerdictStore) -> None:
        self._recorded = recorded
        self._new: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> bytes | None:
        """The recorded verdict under ``digest``, else the one kept here, or None."""
        stored = self._recorded.get(digest)
        if stored is not None:
            return stored
        with self._lock:
            return self._new.get(digest)

    def put_once(self, digest: str, record: bytes) -> bytes:
        """Keep ``record`` in memory unless a verdict exists; return the one in force."""
        stored = self._recorded.get(digest)
        if stored is not None:  # spec: INV-3 — a recorded verdict is never replaced
            return stored
        with self._lock:
            return self._new.setdefault(digest, record)

    def digests(self) -> list[str]:
        """Every digest with a recorded or kept verdict."""
        with self._lock:
            kept = list(self._new)
        return sorted({*self._recorded.digests(), *kept})
