"""Proof verdicts are attested: each new verdict is logged as a DSSE-signed in-toto statement.

The wrapper sits between the proof gate and its (sealed) verdict store: when
the gate records a verdict for the first time, an in-toto Statement v1 whose
subject is the obligation digest and whose predicate is the verdict record
is signed into a DSSE envelope and appended to the log (issue 4, item 7), so
an auditor can check every verdict offline with the attestation key.
"""

from __future__ import annotations

import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sop_verified.core.proofgate.store import VerdictStore
from sop_verified.errors import IntegrityError
from sop_verified.nexus.log_service import attest
from sop_verified.tools.attest import PREDICATE_VERDICT
from sop_verified.tools.tlog import TransparencyLog

__all__ = ["AttestingVerdictStore"]


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
