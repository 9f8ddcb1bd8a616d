"""EMP's verification outputs: signed by EMP, recorded write-once, one per subject and claim.

A :class:`VerificationOutput` says what EMP concluded (``verdict``, with its
``evidence``) about a ``claim`` on a ``subject`` (a content digest), signed
with an Ed25519 key the operator registered on the admin plane. The
signature covers DSSE's pre-authentication encoding of the canonical output
without its signature, under the payload type :data:`OUTPUT_PAYLOAD_TYPE`.

One output is stored per ``(subject, claim)``, under :func:`output_resource`
in EMP's write-once scope (see :class:`~sop_verified.protocols.emp.state.EmpState`).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sop_verified.core.contracts import ensure, require
from sop_verified.core.request import CONTENT_DIGEST_PATTERN
from sop_verified.errors import ProtocolError
from sop_verified.tools.attest import pae
from sop_verified.tools.canonical import canonical_json, sha256_hex

__all__ = [
    "MAX_EVIDENCE_BYTES",
    "OUTPUTS_ROOT",
    "OUTPUT_PAYLOAD_TYPE",
    "PREDICATE_OUTPUT",
    "OutputRecord",
    "VerificationOutput",
    "emp_key_id",
    "output_resource",
    "sign_output",
]

OUTPUT_PAYLOAD_TYPE = "application/vnd.sop.emp-output+json"
PREDICATE_OUTPUT = "https://sop.local/attestation/verification-output/v1"
OUTPUTS_ROOT = "verdicts/emp/outputs"
MAX_EVIDENCE_BYTES = 16 * 1024
_CLAIM = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"


class VerificationOutput(BaseModel):
    """One signed verification output (untrusted until :meth:`EmpState.verify` passes)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    subject: str = Field(pattern=CONTENT_DIGEST_PATTERN)
    claim: str = Field(pattern=_CLAIM)
    verdict: Literal["PASS", "FAIL", "INCONCLUSIVE"]
    evidence: dict[str, Any] = Field(default_factory=dict)
    key_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    signature: str = Field(pattern=r"^[A-Za-z0-9+/]{86}==$")

    @field_validator("evidence")
    @classmethod
    def _evidence(cls, v: dict[str, Any]) -> dict[str, Any]:
        try:
            size = len(canonical_json(v))
        except Exception as exc:
            raise ValueError(f"evidence is not JSON: {exc}") from None
        if size > MAX_EVIDENCE_BYTES:
            raise ValueError(f"evidence is {size} bytes, at most {MAX_EVIDENCE_BYTES} accepted")
        return v

    @ensure(lambda result: "signature" not in result)
    def body(self) -> dict[str, Any]:
        """What the signature covers: the output without its signature."""
        return self.model_dump(exclude={"signature"})

    @ensure(lambda result: result.startswith(b"DSSEv1 "))
    def signed_message(self) -> bytes:
        """The bytes EMP signs (DSSE PAE of the canonical body)."""
        return pae(OUTPUT_PAYLOAD_TYPE, canonical_json(self.body()))

    @ensure(lambda result: result.startswith(b"{"))
    def to_bytes(self) -> bytes:
        """The canonical JSON of the whole output: what is stored."""
        return canonical_json(self.model_dump())

    @ensure(lambda result: result.startswith("sha256:"))
    def digest(self) -> str:
        """``sha256:`` of :meth:`to_bytes`."""
        return "sha256:" + sha256_hex(self.to_bytes())

    @classmethod
    def parse(cls, data: bytes | dict[str, Any]) -> VerificationOutput:
        """Parse an untrusted output strictly.

        Raises:
            ProtocolError: ``bad_output`` (not JSON, unknown field, malformed value).
        """
        try:
            raw = orjson.loads(data) if isinstance(data, bytes) else data
            return cls.model_validate(raw)
        except (orjson.JSONDecodeError, ValidationError) as exc:
            first = exc.errors()[0] if isinstance(exc, ValidationError) else None
            where = ".".join(str(p) for p in first["loc"]) if first else "output"
            message = str(first["msg"]) if first else str(exc)
            raise ProtocolError(
                f"verification output is malformed: {message}", code="bad_output", where=where
            ) from None


@dataclass(frozen=True, slots=True)
class OutputRecord:
    """A recorded output (what the log's ``emp.output`` record says)."""

    subject: str
    claim: str
    verdict: str
    output_digest: str
    key_id: str
    resource: str
    log_index: int
    decision_index: int
    effect_index: int
    attestation_index: int
    time: int

    @ensure(lambda self, result: result["output_digest"] == self.output_digest)
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "subject": self.subject,
            "claim": self.claim,
            "verdict": self.verdict,
            "output_digest": self.output_digest,
            "key_id": self.key_id,
            "resource": self.resource,
            "log_index": self.log_index,
            "decision_index": self.decision_index,
            "effect_index": self.effect_index,
            "attestation_index": self.attestation_index,
            "time": self.time,
        }


@ensure(lambda result: len(result) == 64)
def emp_key_id(public: Ed25519PublicKey) -> str:
    """The id of an EMP key: hex SHA-256 of the raw public key."""
    return hashlib.sha256(public.public_bytes_raw()).hexdigest()


@ensure(lambda key, result: result.key_id == emp_key_id(key.public_key()))
def sign_output(
    *, subject: str, claim: str, verdict: str, evidence: Mapping[str, Any], key: Ed25519PrivateKey
) -> VerificationOutput:
    """EMP's side: make and sign a verification output.

    Raises:
        ProtocolError: ``bad_output`` (a malformed subject, claim, verdict or evidence).
    """
    unsigned = {
        "subject": subject,
        "claim": claim,
        "verdict": verdict,
        "evidence": dict(evidence),
        "key_id": emp_key_id(key.public_key()),
        "signature": "A" * 86 + "==",
    }
    draft = VerificationOutput.parse(unsigned)
    sig = base64.b64encode(key.sign(draft.signed_message())).decode()
    return draft.model_copy(update={"signature": sig})


@require(lambda subject: subject.startswith("sha256:"))
@ensure(lambda result: result.startswith(OUTPUTS_ROOT + "/"))
def output_resource(subject: str, claim: str) -> str:
    """Where the output for ``(subject, claim)`` is stored (one name per pair: write-once)."""
    claim_id = hashlib.sha256(claim.encode("utf-8")).hexdigest()[:32]
    return f"{OUTPUTS_ROOT}/{subject.removeprefix('sha256:')}/{claim_id}.json"
