"""EMP's controller: record a signed verification output, write-once, with an attestation.

:meth:`EmpController.record` sends a ``verdict.record`` request through the
kernel (capability, policy, scope obligation, log). On the logged ALLOW it
checks, in order: the request names exactly this output's place
(:func:`~sop_verified.protocols.emp.outputs.output_resource`), EMP's signature
verifies with a registered key, and no *different* output is recorded for
the same subject and claim (``immutability_violation``; nothing is written).
Then the output's bytes are stored in EMP's write-once scope, an in-toto
attestation of the output is logged, and finally the ``emp.output`` record.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from typing import Any

from sop_verified.core.contracts import ensure, invariant
from sop_verified.core.persistence import PersistenceController
from sop_verified.core.ports import Clock
from sop_verified.core.request import Decision, Reason, Request, Stage
from sop_verified.errors import ProtocolError
from sop_verified.protocols.effects import Attest, Submit, failure_reason, parse_or_deny, refuse
from sop_verified.protocols.emp.outputs import (
    PREDICATE_OUTPUT,
    OutputRecord,
    VerificationOutput,
    output_resource,
)
from sop_verified.protocols.emp.state import EmpState
from sop_verified.protocols.ledger import ProtocolLedger

__all__ = ["EmpController", "RecordedOutput"]


@dataclass(frozen=True, slots=True)
class RecordedOutput:
    """What an EMP ALLOW recorded: the output's record, and whether it was recorded before."""

    output: OutputRecord
    unchanged: bool

    @ensure(lambda self, result: result["unchanged"] is self.unchanged)
    def json_fields(self) -> dict[str, Any]:
        """What this adds to its ALLOW's JSON form: ``output`` and ``unchanged``."""
        return {"output": self.output.to_dict(), "unchanged": self.unchanged}


@invariant(lambda self: self._state is not None and self._ledger is not None)
class EmpController:
    """Carries out EMP's gated recording of verification outputs."""

    def __init__(
        self,
        *,
        state: EmpState,
        ledger: ProtocolLedger,
        submit: Submit,
        persistence: PersistenceController,
        attest: Attest,
        now: Clock,
    ) -> None:
        """Wire the controller to the state, the ledger, the kernel and the persistence."""
        self._state = state
        self._ledger = ledger
        self._submit = submit
        self._persistence = persistence
        self._attest = attest
        self._now = now
        self._lock = threading.RLock()

    @property
    def state(self) -> EmpState:
        """EMP's state (keys and recorded outputs)."""
        return self._state

    @ensure(lambda result: not result.allowed or isinstance(result.record, RecordedOutput))
    def record(self, raw: Request | dict[str, Any], output: VerificationOutput) -> Decision:
        """Decide a ``verdict.record`` of ``output``; on ALLOW store, attest and record it.

        Args:
            raw: the request: resource ``output_resource(subject, claim)``,
                ``content_digest`` and ``context.size_bytes`` of ``output.to_bytes()``.
            output: the signed output.

        Returns:
            The kernel's DENY, a refusal (``resource_mismatch``, ``unknown_key``,
            ``bad_signature``, ``immutability_violation``, ...), or the ALLOW with its
            :class:`RecordedOutput` ``record`` (``unchanged`` when this very output was
            recorded before).
        """
        request = parse_or_deny(self._submit, raw)
        if isinstance(request, Decision):
            return request
        with self._lock:
            return self._record(request, output)

    def _check(self, request: Request, output: VerificationOutput) -> bool:
        expected = output_resource(output.subject, output.claim)
        if request.action != "verdict.record" or request.resource != expected:
            raise ProtocolError(
                f"`{request.action}` of `{request.resource}` does not record this output",
                code="resource_mismatch",
                accepted=f"`verdict.record` of `{expected}`",
            )
        if self._state.is_recorded(output):  # spec: INV-3 — a recorded output never changes
            return True  # verified when it was recorded (its key may be revoked since)
        self._state.verify(output)  # EMP rule: the signature of a registered key, not revoked
        return False

    def _record(self, request: Request, output: VerificationOutput) -> Decision:
        decision = self._submit(request)
        if not decision.allowed:
            return decision
        try:
            unchanged = self._check(request, output)
        except Exception as exc:  # spec: INV-2 — refused before anything is written
            why = failure_reason(exc, "recording the output")
            return refuse(self._ledger, "emp", decision, request, why, now=self._now())
        written = self._persistence.execute(decision, request, output.to_bytes())  # spec: INV-9
        if not written.allowed:
            return _immutable(written)
        try:
            record = self._state.recorded(output.subject, output.claim) if unchanged else None
            record = record or self._attest_and_record(written, request, output)
        except Exception as exc:  # spec: INV-2 — stored but not recorded: say so, DENY
            return self._ledger.refuse("emp", written, request, [failure_reason(exc, "recording")])
        return dataclasses.replace(written, record=RecordedOutput(record, unchanged))

    def _attest_and_record(
        self, written: Decision, request: Request, output: VerificationOutput
    ) -> OutputRecord:
        effect = written.write
        if effect is None:  # the persistence controller's ALLOW always says what it wrote
            raise ProtocolError("the write of the output is not reported", code="effect_failed")
        predicate = {
            "claim": output.claim,
            "verdict": output.verdict,
            "evidence": output.evidence,
            "output_digest": output.digest(),
            "emp_key_id": output.key_id,
            "signature": output.signature,
            "resource": request.resource,
            "decision_index": written.log_index,
        }
        subject = [(output.subject, output.subject.removeprefix("sha256:"))]
        attestation = self._attest("verification_output", subject, PREDICATE_OUTPUT, predicate)
        entry = {
            "type": "emp.output",
            "subject": output.subject,
            "claim": output.claim,
            "verdict": output.verdict,
            "output_digest": output.digest(),
            "key_id": output.key_id,
            "resource": request.resource,
            "decision_index": written.log_index,
            "effect_index": effect.index,
            "attestation_index": attestation.index,
            "request_id": request.request_id,
            "time": self._now(),
        }
        self._ledger.record(entry)
        record = self._state.recorded(output.subject, output.claim)
        if record is None:
            raise ProtocolError("the output record was not applied", code="effect_failed")
        return record


def _immutable(written: Decision) -> Decision:
    """The persistence refusal of a second write, named as the immutability violation it is."""
    if not any(r.code == "write_once_violation" for r in written.reasons):
        return written
    why = Reason(
        Stage.PROTOCOL,
        "immutability_violation",
        "another output is stored for this subject and claim; it never changes",
    )
    return dataclasses.replace(written, reasons=(why, *written.reasons))
