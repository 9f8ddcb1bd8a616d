"""DRAC's controller: phase steps, catalogued artifacts and catalog queries, each gated.

Every call sends one request through the kernel (capability, policy, SOP's
derived obligations including the phase-order one, the log) and acts only on
a logged ALLOW (INV-9):

- :meth:`DracController.step` (``phase.advance``): re-checks the step in
  plain code, then logs the ``drac.phase`` record that moves the session;
- :meth:`DracController.catalog` (``artifact.persist``): re-checks the
  session is in the artifact's open phase, stores the bytes through the
  persistence controller, logs a SLSA provenance attestation (inputs to
  output) and then the ``drac.artifact`` record;
- :meth:`DracController.query` (``artifact.read``): the catalog, filtered by
  session, phase and digest.

Calls that change a session are serialised, so the state the kernel's
obligation was derived from is the state the effect is checked against.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sop_verified.core.contracts import ensure, invariant, require
from sop_verified.core.persistence import PersistenceController
from sop_verified.core.ports import Clock
from sop_verified.core.request import CONTENT_DIGEST_PATTERN, Decision, Request
from sop_verified.errors import ProtocolError
from sop_verified.protocols.drac.catalog import ArtifactRecord, DracState, check_inputs, provenance
from sop_verified.protocols.drac.phases import (
    PHASE_PATTERN,
    SESSION_PATTERN,
    Step,
    parse_artifact,
    parse_step,
)
from sop_verified.protocols.effects import (
    Attest,
    Submit,
    diagnose,
    explain,
    failure_reason,
    parse_or_deny,
    refuse,
    rule,
)
from sop_verified.protocols.ledger import ProtocolLedger
from sop_verified.tools.attest import PREDICATE_ARTIFACT
from sop_verified.tools.tlog_store import Receipt

__all__ = ["CatalogQuery", "DracController", "PhaseStep"]


@dataclass(frozen=True, slots=True)
class PhaseStep:
    """A logged phase step: the session, the phase, the event and the record's receipt."""

    session: str
    phase: str
    event: str
    receipt: Receipt

    @ensure(lambda self, result: result["phase"]["receipt"]["index"] == self.receipt.index)
    def json_fields(self) -> dict[str, Any]:
        """What this step adds to its ALLOW's JSON form: ``phase``."""
        return {
            "phase": {
                "session": self.session,
                "phase": self.phase,
                "event": self.event,
                "receipt": self.receipt.to_dict(),
            }
        }


@dataclass(frozen=True, slots=True)
class CatalogQuery:
    """A catalog query's decision and, when allowed, the matching artifacts."""

    decision: Decision
    artifacts: tuple[ArtifactRecord, ...] = ()

    @property
    def allowed(self) -> bool:
        """True only for an ALLOW."""
        return self.decision.allowed


def _not(code: str, message: str) -> ProtocolError:
    return ProtocolError(message, code=code)


@invariant(lambda self: self._state is not None and self._ledger is not None)
class DracController:
    """Carries out DRAC's gated operations."""

    def __init__(
        self,
        *,
        state: DracState,
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
    def state(self) -> DracState:
        """DRAC's state (read-only use: the phase machine and the catalog)."""
        return self._state

    @require(lambda raw: raw is not None)
    @ensure(lambda result: not result.allowed or isinstance(result.record, PhaseStep))
    def step(self, raw: Request | dict[str, Any]) -> Decision:
        """Decide a ``phase.advance`` request and, on ALLOW, move the session one step.

        Returns:
            The kernel's DENY (explained when the phase order refused it), a
            refusal, or the ALLOW with its :class:`PhaseStep` ``record`` (with its receipt).
        """
        request = parse_or_deny(self._submit, raw)
        if isinstance(request, Decision):
            return request
        with self._lock:
            return self._step(request)

    @ensure(lambda result: not result.allowed or isinstance(result.record, ArtifactRecord))
    def catalog(
        self, raw: Request | dict[str, Any], data: bytes, inputs: Sequence[str] = ()
    ) -> Decision:
        """Decide an ``artifact.persist`` of a session artifact; on ALLOW store and catalogue it.

        Args:
            raw: the request (its resource ``artifacts/drac/sessions/<s>/<PHASE>/<name>``,
                its ``content_digest`` and ``context.size_bytes`` those of ``data``).
            data: the artifact's bytes.
            inputs: the digests it was made from.

        Returns:
            The DENY, a refusal, or the ALLOW with its :class:`ArtifactRecord`
            ``record`` and its ``write``.
        """
        request = parse_or_deny(self._submit, raw)
        if isinstance(request, Decision):
            return request
        with self._lock:
            return self._catalog(request, data, inputs)

    @require(lambda raw: raw is not None)
    @ensure(lambda result: result.allowed or not result.artifacts)
    def query(
        self,
        raw: Request | dict[str, Any],
        *,
        session: str | None = None,
        phase: str | None = None,
        digest: str | None = None,
    ) -> CatalogQuery:
        """Decide an ``artifact.read`` of the catalog; on ALLOW return the matching artifacts."""
        request = parse_or_deny(self._submit, raw)
        if isinstance(request, Decision):
            return CatalogQuery(request)
        decision = self._submit(request)
        if not decision.allowed:
            return CatalogQuery(decision)
        if request.action != "artifact.read" or not _filters_ok(session, phase, digest):
            why = rule(
                _not(
                    "bad_query",
                    f"`{request.action}` with filters `{session}`, `{phase}`, `{digest}` "
                    "does not read the catalog",
                )
            )
            return CatalogQuery(self._ledger.refuse("drac", decision, request, [why]))
        found = self._state.query(session=session, phase=phase, digest=digest)
        return CatalogQuery(decision, tuple(found))

    def _step(self, request: Request) -> Decision:
        step = parse_step(request.resource) if request.action == "phase.advance" else None
        machine = self._state.machine
        why = None if step is None else diagnose(lambda: machine.check_step(step))
        decision = self._submit(request)
        if not decision.allowed:
            return explain(self._ledger, "drac", decision, request, why)
        try:
            if step is None:
                raise _not("not_a_step", f"`{request.resource}` names no DRAC phase step")
            _check_context(request, step.session, step.phase)
            machine.check_step(step)  # DRAC rule: the previous phase completed and was logged
            receipt = self._ledger.record(self._phase_entry(decision, request, step))
        except Exception as exc:  # spec: INV-2 — no step unless every check passed and it is logged
            return refuse(
                self._ledger,
                "drac",
                decision,
                request,
                failure_reason(exc, "the step"),
                now=self._now(),
            )
        record = PhaseStep(step.session, step.phase, str(step.event), receipt)
        return dataclasses.replace(decision, record=record)

    def _phase_entry(self, decision: Decision, request: Request, step: Step) -> dict[str, Any]:
        return {
            "type": "drac.phase",
            "session": step.session,
            "phase": step.phase,
            "event": str(step.event),
            "decision_index": decision.log_index,
            "request_id": request.request_id,
            "time": self._now(),
        }

    def _catalog(self, request: Request, data: bytes, inputs: Sequence[str]) -> Decision:
        target = parse_artifact(request.resource) if request.action == "artifact.persist" else None
        machine = self._state.machine
        why = None if target is None else diagnose(lambda: machine.check_open(target[0], target[1]))
        decision = self._submit(request)
        if not decision.allowed:
            return explain(self._ledger, "drac", decision, request, why)
        try:
            if target is None:
                raise _not("not_an_artifact", f"`{request.resource}` names no session artifact")
            _check_context(request, target[0], target[1])
            checked = check_inputs(inputs)
            machine.check_open(target[0], target[1])  # DRAC rule: only the open phase's artifacts
        except Exception as exc:  # spec: INV-2 — refused before anything is written
            return refuse(
                self._ledger,
                "drac",
                decision,
                request,
                failure_reason(exc, "cataloguing"),
                now=self._now(),
            )
        # after the logged ALLOW, the only record that admits the write
        written = self._persistence.execute(decision, request, data)  # spec: INV-9
        if not written.allowed:
            return written
        try:
            record = self._record_artifact(written, request, target, checked)
        except Exception as exc:  # spec: INV-2 — stored but not catalogued: say so, DENY
            return self._ledger.refuse(
                "drac", written, request, [failure_reason(exc, "cataloguing")]
            )
        return dataclasses.replace(written, record=record)

    def _record_artifact(
        self,
        written: Decision,
        request: Request,
        target: tuple[str, str, str],
        inputs: tuple[str, ...],
    ) -> ArtifactRecord:
        session, phase, name = target
        effect = written.write
        if effect is None:  # the persistence controller's ALLOW always says what it wrote
            raise _not("effect_failed", "the write of an allowed artifact is not reported")
        digest, index = effect.digest, int(written.log_index or 0)
        predicate = provenance(
            session=session,
            phase=phase,
            name=name,
            inputs=inputs,
            known=self._state.names(inputs),
            request_id=request.request_id,
            decision_index=index,
            time=self._now(),
        )
        subject = [(request.resource, digest.removeprefix("sha256:"))]
        attestation = self._attest("artifact", subject, PREDICATE_ARTIFACT, predicate)
        entry = {
            "type": "drac.artifact",
            "session": session,
            "phase": phase,
            "name": name,
            "digest": digest,
            "size": effect.size,
            "inputs": list(inputs),
            "resource": request.resource,
            "decision_index": index,
            "effect_index": effect.index,
            "attestation_index": attestation.index,
            "request_id": request.request_id,
            "time": self._now(),
        }
        receipt = self._ledger.record(entry)
        found = [r for r in self._state.query(digest=digest) if r.log_index == receipt.index]
        if not found:
            raise _not("effect_failed", f"the catalogue record `{receipt.index}` was not applied")
        return found[0]


def _filters_ok(session: str | None, phase: str | None, digest: str | None) -> bool:
    checks = ((session, SESSION_PATTERN), (phase, PHASE_PATTERN), (digest, CONTENT_DIGEST_PATTERN))
    return all(v is None or re.fullmatch(p, v) is not None for v, p in checks)


def _check_context(request: Request, session: str, phase: str) -> None:
    for name, want in (("session", session), ("phase", phase)):
        got = request.context.get(name)
        if got is not None and got != want:
            raise _not(
                "context_mismatch", f"`context.{name}` is `{got}`, the resource says `{want}`"
            )
