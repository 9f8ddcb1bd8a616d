"""EMP's state: the keys the operator registered and the outputs recorded, from the log.

Keys arrive by ``admin`` entries (op ``emp.key.register``, admin plane only,
INV-6), and go by ``admin`` entries too (op ``emp.key.revoke``): from the
revocation's log index on, no output signed by that key is recorded
(``revoked_key``), while the outputs recorded before it stay recorded and
verifiable (their records, receipts and attestations do not change, and the
same output sent again is still ``unchanged``). Outputs arrive by
``emp.output`` records, each appended after the output's bytes are stored
write-once and attested. Once an output is recorded for a ``(subject, claim)``
that pair never gets another: the same output again is ``unchanged``, a
different one an ``immutability_violation``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sop_verified.core.contracts import ensure, invariant, require
from sop_verified.errors import IntegrityError, ProtocolError
from sop_verified.protocols.emp.outputs import OutputRecord, VerificationOutput, emp_key_id
from sop_verified.tools.tlog_store import Receipt

__all__ = ["REVOKE_KEY_OP", "EmpState", "key_entry", "revoke_entry"]

_REGISTER = "emp.key.register"
REVOKE_KEY_OP = "emp.key.revoke"


@ensure(lambda result: result["op"] == _REGISTER)
def key_entry(public: Ed25519PublicKey, *, time: int) -> dict[str, Any]:
    """The admin entry that registers ``public`` as an EMP signing key."""
    return {
        "type": "admin",
        "op": _REGISTER,
        "key_id": emp_key_id(public),
        "public_key": base64.b64encode(public.public_bytes_raw()).decode(),
        "time": time,
    }


@ensure(lambda result: result["op"] == REVOKE_KEY_OP)
def revoke_entry(key_id: str, *, reason: str, time: int) -> dict[str, Any]:
    """The admin entry that revokes EMP signing key ``key_id``."""
    return {"type": "admin", "op": REVOKE_KEY_OP, "key_id": key_id, "reason": reason, "time": time}


def _key_of(entry: Mapping[str, Any]) -> tuple[str, Ed25519PublicKey]:
    try:
        raw = base64.b64decode(str(entry["public_key"]), validate=True)
        public = Ed25519PublicKey.from_public_bytes(raw)
    except (KeyError, binascii.Error, ValueError) as exc:
        raise IntegrityError(f"an `{_REGISTER}` entry is malformed: {exc}") from None
    if entry.get("key_id") != emp_key_id(public):
        raise IntegrityError(f"an `{_REGISTER}` entry names the wrong key id")
    return emp_key_id(public), public


def _output_of(index: int, entry: Mapping[str, Any]) -> OutputRecord:
    try:
        return OutputRecord(
            subject=str(entry["subject"]),
            claim=str(entry["claim"]),
            verdict=str(entry["verdict"]),
            output_digest=str(entry["output_digest"]),
            key_id=str(entry["key_id"]),
            resource=str(entry["resource"]),
            log_index=index,
            decision_index=int(entry["decision_index"]),
            effect_index=int(entry["effect_index"]),
            attestation_index=int(entry["attestation_index"]),
            time=int(entry["time"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise IntegrityError(f"an `emp.output` record is malformed: {exc}") from None


@invariant(lambda self: all(k in self._keys for k in (o.key_id for o in self._outputs.values())))
class EmpState:
    """Registered EMP keys and recorded verification outputs."""

    def __init__(self) -> None:
        """No key, no output."""
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._revoked: dict[str, int] = {}  # key id -> the log index of its revocation
        self._outputs: dict[tuple[str, str], OutputRecord] = {}

    @ensure(lambda result: result == sorted(result))
    def key_ids(self) -> list[str]:
        """The registered key ids, sorted."""
        return sorted(self._keys)

    @ensure(lambda self, key_id, result: result is None or key_id in self._keys)
    def revoked_at(self, key_id: str) -> int | None:
        """The log index of the revocation of EMP key ``key_id``, or None (not revoked)."""
        return self._revoked.get(key_id)

    @ensure(lambda self, output: output.key_id in self._keys, "signed with a registered key")
    @ensure(lambda self, output: output.key_id not in self._revoked, "not a revoked key")
    def verify(self, output: VerificationOutput) -> None:
        """Check EMP's signature on ``output`` with the key it names, a key in force.

        Raises:
            ProtocolError: ``unknown_key`` (not registered), ``revoked_key``
                (revoked: no new output of it is recorded) or ``bad_signature``.
        """
        public = self._keys.get(output.key_id)
        if public is None:
            raise ProtocolError(
                f"EMP key `{output.key_id[:16]}` is not registered",
                code="unknown_key",
                accepted="a key the operator registered (`SOP.register_emp_key`)",
            )
        revoked = self._revoked.get(output.key_id)
        if revoked is not None:  # spec: INV-6 — the operator's revocation is in force
            raise ProtocolError(
                f"EMP key `{output.key_id[:16]}` was revoked at log index `{revoked}`;"
                " outputs it signed before then stay recorded, no new one is",
                code="revoked_key",
                accepted="an output signed by a registered key that is not revoked",
            )
        try:
            public.verify(base64.b64decode(output.signature), output.signed_message())
        except InvalidSignature:
            raise ProtocolError(
                f"the signature does not verify with EMP key `{output.key_id[:16]}`",
                code="bad_signature",
            ) from None

    @ensure(lambda subject, result: result is None or result.subject == subject)
    def recorded(self, subject: str, claim: str) -> OutputRecord | None:
        """The output recorded for ``(subject, claim)``, or None."""
        return self._outputs.get((subject, claim))

    @ensure(
        lambda self, output, result: (
            not result or self.recorded(output.subject, output.claim) is not None
        )
    )
    def is_recorded(self, output: VerificationOutput) -> bool:
        """True when exactly this output is recorded already; False when none is.

        Raises:
            ProtocolError: ``immutability_violation``: another output is recorded
                for the same subject and claim.
        """
        current = self._outputs.get((output.subject, output.claim))
        if current is None:
            return False
        if current.output_digest != output.digest():  # spec: INV-3 — recorded outputs never change
            raise ProtocolError(
                f"an output `{current.output_digest}` is recorded for subject "
                f"`{output.subject}` and claim `{output.claim}`; it never changes",
                code="immutability_violation",
                accepted="the recorded output again (unchanged), or a new subject or claim",
            )
        return True

    @require(lambda entry: entry.get("type") in ("admin", "emp.output"))
    def check(self, entry: Mapping[str, Any]) -> None:
        """Raise IntegrityError unless the record fits the state now."""
        if entry["type"] == "admin":
            if entry.get("op") == REVOKE_KEY_OP:
                key_id = str(entry.get("key_id"))
                if key_id not in self._keys:
                    raise IntegrityError(f"an unregistered EMP key `{key_id[:16]}` is revoked")
                if key_id in self._revoked:
                    raise IntegrityError(f"EMP key `{key_id[:16]}` is revoked twice")
                return
            key_id, _ = _key_of(entry)
            if key_id in self._keys:
                raise IntegrityError(f"EMP key `{key_id[:16]}` is registered twice")
            return
        record = _output_of(0, entry)
        if record.key_id not in self._keys:
            raise IntegrityError(f"an `emp.output` names unregistered key `{record.key_id[:16]}`")
        if record.key_id in self._revoked:  # spec: INV-6 — recorded after its key's revocation
            raise IntegrityError(
                f"an `emp.output` signed by EMP key `{record.key_id[:16]}` is recorded after"
                f" its revocation at log index `{self._revoked[record.key_id]}`"
            )
        if (record.subject, record.claim) in self._outputs:
            raise IntegrityError(
                f"a second `emp.output` for `{record.subject}` and `{record.claim}`"
            )

    @require(lambda index: index >= 0)
    def apply(self, index: int, entry: Mapping[str, Any], payload: bytes, receipt: Receipt) -> None:
        """Apply one logged record (checked again first)."""
        self.check(entry)
        if entry["type"] == "admin":
            if entry.get("op") == REVOKE_KEY_OP:
                self._revoked[str(entry["key_id"])] = index
                return
            key_id, public = _key_of(entry)
            self._keys[key_id] = public
            return
        record = _output_of(index, entry)
        self._outputs[(record.subject, record.claim)] = record
