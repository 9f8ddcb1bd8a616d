"""EMP's interface: proof obligations through the gate, verification outputs write-once.

``sop.emp.submit_obligation(obligation, token=...)`` sends an
``obligation.submit`` request carrying the obligation under EMP's scope. The
kernel checks EMP's capability and the policy set, sends the obligation
through the proof gate, and logs the decision; the outcome pairs that
decision with the verdict the gate recorded (PROVED, REFUTED with its
counterexample, UNKNOWN with its reason, REJECTED with what was wrong).

``sop.emp.record_output(output, token=...)`` records a verification output
EMP signed (:func:`~sop_verified.protocols.emp.sign_output`) with a key the
operator registered: a ``verdict.record`` request, then (on ALLOW) the
signature is verified, the output stored write-once and attested. A second,
different output for the same subject and claim is refused
(``immutability_violation``; nothing is written).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sop_verified.core.obligations import VerdictResult
from sop_verified.core.request import Decision, Obligation, Stage
from sop_verified.core.transport import Transport
from sop_verified.errors import SOPError
from sop_verified.protocols.bridge import Bridge, new_request_id
from sop_verified.protocols.emp.controller import EmpController
from sop_verified.protocols.emp.outputs import VerificationOutput, output_resource
from sop_verified.protocols.requests import bridge_request, delivered

__all__ = ["EMP", "ObligationOutcome"]

OBLIGATION_SCOPE = "verdicts/emp/obligations"


@dataclass(frozen=True)
class ObligationOutcome:
    """The bridge decision and, when the obligation reached the gate, its recorded verdict."""

    decision: Decision
    verdict: VerdictResult | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        v = self.verdict
        return {
            "decision": self.decision.to_dict(),
            "verdict": None
            if v is None
            else {
                "verdict": str(v.verdict),
                "digest": v.digest,
                "reason": v.reason,
                "evidence": v.evidence,
            },
        }


class EMP:
    """The EMP protocol's facade (principal ``emp``)."""

    principal = "emp"

    def __init__(self, bridge: Bridge, outputs: EmpController | None = None) -> None:
        self._bridge = bridge
        self._outputs = outputs

    def record_output(
        self,
        output: VerificationOutput,
        *,
        token: str,
        request_id: str | None = None,
        transport: Transport | None = None,
    ) -> Decision:
        """Record a signed verification output, write-once, with an attestation.

        Args:
            output: the output, signed by EMP with a registered key.
            token: EMP's capability token.
            request_id: optional; a fresh one by default.
            transport: what the transport said about a remote call; None in-process.

        Returns:
            The decision; on ALLOW its ``record`` is a
            :class:`~sop_verified.protocols.emp.controller.RecordedOutput` (the output's
            record, ``unchanged`` True when this very output was recorded before).

        Raises:
            SOPError: the facade was made without SOP's EMP controller.
        """
        if self._outputs is None:
            raise SOPError("this EMP facade has no output controller; use `sop.emp`")
        data = output.to_bytes()
        request = bridge_request(
            self.principal,
            "verdict.record",
            output_resource(output.subject, output.claim),
            token=token,
            request_id=request_id,
            data=data,
        )
        return self._outputs.record(delivered(request, transport), output)

    def submit_obligation(
        self,
        obligation: Obligation | dict[str, Any],
        *,
        token: str,
        request_id: str | None = None,
        transport: Transport | None = None,
    ) -> ObligationOutcome:
        """Submit one obligation; ALLOW only if it is PROVED (and everything else holds).

        Args:
            obligation: the obligation (``id``, ``format`` "smt2" or "json", ``source``).
            token: EMP's capability token.
            request_id: optional; a fresh one by default.
            transport: what the transport said about a remote call; None in-process.

        Returns:
            The decision and the recorded verdict (None when the request was denied
            before the proof gate, e.g. for a bad capability: unauthorised callers
            never get solver time).
        """
        ob = (
            obligation
            if isinstance(obligation, Obligation)
            else Obligation.model_validate(obligation)
        )
        request: dict[str, Any] = {
            "request_id": request_id or new_request_id("emp"),
            "principal": self.principal,
            "action": "obligation.submit",
            "resource": f"{OBLIGATION_SCOPE}/{ob.id.replace(':', '-')}",
            "capability": token,
            "channel": "bridge",
            "obligations": [ob.model_dump()],
        }
        decision = self._bridge.submit(delivered(request, transport))
        reached_gate = decision.allowed or any(
            r.stage is Stage.OBLIGATION for r in decision.reasons
        )
        verdict = self._bridge.recorded_verdict(ob) if reached_gate else None
        return ObligationOutcome(decision, verdict)
