"""``SOP``: the booted kernel with its services, and the operator's admin plane.

``SOP.boot(data_dir)`` wires storage, keys, the capability registry, the
active policy set, the proof gate, the log and the kernel as services of the
declared graph, boots them in the deterministic order (INV-8), writes the boot
manifest and logs it. ``sop.submit(request)`` is the Runtime Bridge entry.
The admin methods (admit, attenuate, revoke, activate_policy) are the admin
plane: not reachable through ``submit`` (INV-6), and each one is logged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sop_verified.core.capability import Capability, CapabilityRegistry
from sop_verified.core.health import Health
from sop_verified.core.obligations import ProofGate, Verdict, VerdictResult
from sop_verified.core.persistence import (
    ReadResult,
)
from sop_verified.core.persistence.pipeline import AsyncLinkedWrites, LinkedWrites
from sop_verified.core.policy import (
    PolicyCheckReport,
    PolicySet,
    check_directory,
    check_policy_set,
)
from sop_verified.core.ports import Clock
from sop_verified.core.proofgate import Z3ProofGate
from sop_verified.core.proofgate.derive import narrowing
from sop_verified.core.request import (
    Decision,
    Obligation,
    Permission,
    Reason,
    Request,
    Stage,
)
from sop_verified.errors import (
    AttenuationError,
    InputError,
    PolicyError,
    SOPError,
)
from sop_verified.nexus import persistence as persistence_service
from sop_verified.nexus import protocols as protocol_service
from sop_verified.nexus.boot import boot
from sop_verified.nexus.config import init_data_dir
from sop_verified.nexus.log_service import rotate_key
from sop_verified.nexus.registry import Service
from sop_verified.nexus.services import SERVICE_GRAPH, ServiceWiring, _need
from sop_verified.protocols.csp import CSP
from sop_verified.protocols.drac import DRAC
from sop_verified.protocols.emp import EMP
from sop_verified.tools.canonical import canonical_json
from sop_verified.tools.tlog_store import Receipt

__all__ = ["SERVICE_GRAPH", "SOP", "PolicyRefusedError", "wall_clock"]


def wall_clock() -> int:
    """The real clock, integer Unix seconds."""
    return int(time.time())


class PolicyRefusedError(PolicyError):
    """A policy set failed its analyses and was not activated; carries the report."""

    def __init__(self, report: PolicyCheckReport) -> None:
        self.report = report
        firsts = [f"{f.code}: {f.message}" for f in report.errors][:3]
        super().__init__("policy set refused: " + "; ".join(firsts))


class SOP(ServiceWiring):
    """A booted SOP instance over one data directory."""

    # ---- life cycle -------------------------------------------------------------------
    @staticmethod
    def init(data_dir: Path) -> None:
        """Create a fresh data directory (configuration and keys)."""
        init_data_dir(data_dir)

    @classmethod
    def boot(
        cls, data_dir: Path, *, now: Clock = wall_clock, proof_gate: ProofGate | None = None
    ) -> SOP:
        """Boot SOP on ``data_dir``; the result is READY or denies everything.

        Args:
            data_dir: a directory made by :meth:`init`.
            now: the clock (tests pin it).
            proof_gate: the proof gate to wire; default the unwired gate (all UNKNOWN).

        Returns:
            The instance; check ``health`` — anything but READY denies every request.
        """
        sop = cls(data_dir, now=now, proof_gate=proof_gate)
        for name, deps in SERVICE_GRAPH.items():
            start, test = getattr(sop, f"_start_{name}"), getattr(sop, f"_test_{name}")
            sop.registry.register(Service(name, deps, start, test))
        report = boot(sop.registry, now=now, facts=sop._facts)
        sop.boot_report = report
        if sop.persistence is not None and sop.kernel is not None:
            sop.linked_writes = LinkedWrites(sop.persistence, sop.kernel.submit_batch)
            sop.async_writes = AsyncLinkedWrites(
                sop.persistence, sop.kernel.submit_batch, sop._writer
            )
        sop._write_manifest(report)
        return sop

    def close(self) -> None:
        """Stop the solver workers and release the storage (after the writer's last batch)."""
        self._writer.shutdown(wait=True)
        if isinstance(self.gate, Z3ProofGate):
            self.gate.close()
        if self.persistence is not None:
            self.persistence.close()
        if self.protocols is not None:
            self.protocols.close()
        if self.store is not None:
            self.store.close()

    @property
    def health(self) -> Health:
        """SOP's health; only READY admits anything."""
        return self.registry.health()

    # ---- the bridge ------------------------------------------------------------------
    def submit(self, request: Request | dict[str, Any] | bytes | str) -> Decision:
        """Decide one request (the Runtime Bridge entry); never raises."""
        return self._bridge_submit(request)

    def recorded_verdict(self, obligation: Obligation) -> VerdictResult | None:
        """The gate's verdict for ``obligation`` (cached: recorded verdicts are never re-solved)."""
        return None if self.gate is None else self.gate.check(obligation)

    def persist(self, request: Request | dict[str, Any], data: bytes) -> Decision:
        """Decide a persist request and, on ALLOW, write ``data`` (the effect after the record).

        Args:
            request: the persist request; ``content_digest`` and
                ``context.size_bytes`` are bound from ``data`` unless it carries
                them (then they must match).
            data: the bytes to store.

        Returns:
            The decision (see :meth:`PersistenceController.execute`); never
            raises for bad input.
        """
        if self.persistence is None:
            return self._not_booted()
        linked = None if self.linked_writes is None else self.linked_writes.persist
        return persistence_service.persist(self.submit, self.persistence, request, data, linked)

    async def persist_async(self, request: Request | dict[str, Any], data: bytes) -> Decision:
        """:meth:`persist` for coroutines on an event loop (ADR 0010).

        Concurrent callers' small content-addressed writes are decided and
        committed in batches by SOP's writer thread, so the loop never waits on
        a decision, a log append or a fsync; every other write runs as
        :meth:`persist` does, in that thread too.

        Args:
            request: the persist request (bound from ``data`` as in :meth:`persist`).
            data: the bytes to store.

        Returns:
            The same answer :meth:`persist` gives; never raises for bad input.
        """
        if self.persistence is None:
            return self._not_booted()
        linked = None if self.async_writes is None else self.async_writes.persist
        return await persistence_service.persist_async(
            self.submit,
            self.persistence,
            request,
            data,
            linked=linked,
            offload=self._offload,
        )

    async def _offload(self, call: Callable[[], Decision]) -> Decision:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._writer, call)
        except Exception as exc:  # spec: INV-2 — e.g. SOP was closed: DENY, never a traceback
            why = f"the operation could not run: `{type(exc).__name__}`"
            return Decision(Permission.DENY, (Reason(Stage.INTERNAL, "internal_error", why),))

    def read(self, request: Request | dict[str, Any]) -> ReadResult:
        """Decide an ``artifact.read`` request and, on ALLOW, return the verified bytes.

        Args:
            request: the read request.

        Returns:
            The decision and, when allowed, the bytes (digest verified) and their record.
        """
        if self.persistence is None:
            return ReadResult(self._not_booted())
        return persistence_service.read(self.submit, self.persistence, request)

    def apply_retention(self) -> list[int]:
        """Apply every scope's retention rules now (admin plane); returns the tombstone indexes."""
        self._ready_caps()
        self._log_admin("persistence.retention", {})  # spec: INV-9 — recorded before the effect
        return _need(self.persistence, "persistence").apply_retention(self.now())

    @property
    def emp(self) -> EMP:
        """EMP's facade: ``submit_obligation(obligation, token=...)``, ``record_output``."""
        return EMP(self, None if self.protocols is None else self.protocols.emp)

    @property
    def drac(self) -> DRAC:
        """DRAC's facade: session phases and the artifact catalog (:mod:`..protocols.drac`)."""
        return DRAC(_need(self.protocols, "protocols").drac)

    @property
    def csp(self) -> CSP:
        """CSP's facade: eligible state, snapshots, resume (:mod:`..protocols.csp`)."""
        return CSP(_need(self.protocols, "protocols").csp)

    def register_emp_key(self, public_key: Ed25519PublicKey | bytes | str) -> str:
        """Register the Ed25519 key EMP signs verification outputs with (admin plane); logged.

        Returns:
            The key id (hex SHA-256 of the raw public key); registering it again changes nothing.
        """
        self._ready_caps()
        key = protocol_service.load_public_key(public_key)
        return protocol_service.register_emp_key(
            _need(self.protocols, "protocols"), key, self.now()
        )

    def revoke_snapshot(self, snapshot: str, reason: str = "revoked by the operator") -> None:
        """Revoke a CSP snapshot (admin plane); logged. It and its descendants never resume."""
        self._ready_caps()
        protocol_service.revoke_snapshot(
            _need(self.protocols, "protocols"), snapshot, reason, self.now()
        )

    def authorize_rollback(self, session: str, snapshot: str) -> Receipt:
        """Authorise resuming an older snapshot of ``session`` (admin plane); logged first."""
        self._ready_caps()
        services = _need(self.protocols, "protocols")
        return protocol_service.authorize_rollback(services, session, snapshot, self.now())

    # ---- the admin plane (never reachable through submit) ---------------------------------
    def admit(
        self,
        principal: str,
        actions: Sequence[str],
        resources: Sequence[str],
        *,
        not_before: int | None = None,
        expires: int,
    ) -> tuple[Capability, str]:
        """Admit a root capability; logged. Returns the capability and its token."""
        caps = self._ready_caps()
        nb = self.now() if not_before is None else not_before
        params = {
            "principal": principal,
            "actions": sorted(actions),
            "resources": list(resources),
            "not_before": nb,
            "expires": expires,
        }
        self._log_admin("capability.admit", params)  # spec: INV-9 — recorded before the effect
        cap, token = caps.admit(principal, list(actions), list(resources), nb, expires)
        self._log_admin("capability.admitted", {"capability": cap.to_claims()})
        return cap, token

    def attenuate(
        self,
        parent_token: str,
        *,
        actions: Sequence[str],
        resources: Sequence[str],
        not_before: int | None = None,
        expires: int | None = None,
    ) -> tuple[Capability, str]:
        """Derive a narrower capability (proved a subset, INV-10); logged.

        The narrowing obligation goes through the proof gate first; the registry
        then proves the same inclusion again on its own before admitting the child.

        Raises:
            AttenuationError: the gate did not prove the child's scopes narrower.
            CapabilityError: the parent token is not live.
        """
        caps = self._ready_caps()
        parent = caps.holder(parent_token)
        self._prove_narrowing(parent, resources)
        params = {
            "actions": sorted(actions),
            "resources": list(resources),
            "not_before": not_before,
            "expires": expires,
        }
        self._log_admin("capability.attenuate", params)  # spec: INV-9
        cap, token = caps.attenuate(
            parent_token,
            actions=list(actions),
            resources=list(resources),
            not_before=not_before,
            expires=expires,
        )
        self._log_admin("capability.attenuated", {"capability": cap.to_claims()})
        return cap, token

    def _prove_narrowing(self, parent: Capability, resources: Sequence[str]) -> None:
        try:
            obligation = narrowing(parent.resources, list(resources))
        except InputError as exc:
            raise AttenuationError(str(exc), code="malformed", capability_id=parent.id) from None
        result = _need(self.gate, "proof gate").check(obligation)
        if result.verdict is not Verdict.PROVED:  # spec: INV-10 — only a proved narrowing
            model = result.evidence.get("model")
            raise AttenuationError(
                f"the proof gate did not prove `{', '.join(resources)}` within "
                f"`{', '.join(parent.resources)}`: {result.verdict} ({result.reason})"
                + (f"; counterexample {model}" if model else ""),
                code="resources_wider",
                capability_id=parent.id,
            )

    def revoke(self, cap_id: str) -> list[str]:
        """Revoke a capability and all its descendants (INV-10); logged."""
        caps = self._ready_caps()
        self._log_admin("capability.revoke", {"capability_id": cap_id})  # spec: INV-9
        revoked = caps.revoke(cap_id)
        self._log_admin("capability.revoked", {"capability_id": cap_id, "revoked": revoked})
        return revoked

    def check_policy(self, path: Path) -> PolicyCheckReport:
        """Run every analysis on the set at ``path`` against this data directory's scopes."""
        config = _need(self.config, "config")
        return check_directory(path, config.scopes.approved, self.policy)

    def activate_policy(self, path: Path) -> PolicyCheckReport:
        """Activate the set at ``path`` only if its analyses pass; logged.

        Raises:
            PolicyRefusedError: the set failed an analysis (with the counterexample).
            PolicyError: the set does not load.
        """
        if self.store is None or self.config is None:
            raise SOPError("SOP did not boot far enough to activate a policy set")
        new = PolicySet.from_path(path)
        report = check_policy_set(new, self.config.scopes.approved, self.policy, source=str(path))
        if not report.ok:  # spec: INV-6 — governance gates activation
            raise PolicyRefusedError(report)
        document = new.document.canonical_bytes()
        self._log_admin("policy.activate", {"policy_digest": new.digest})  # spec: INV-9
        self.store.policies.save_policy_set(new.digest, document, self.now())
        self.policy = new
        return report

    def status(self) -> dict[str, Any]:
        """Health, services, boot order and digests."""
        report = self.boot_report
        return {
            "health": str(self.health),
            "data_dir": str(self.data_dir),
            "services": {
                s.name: {"health": str(s.health), "detail": s.detail}
                for s in self.registry.services()
            },
            "boot_order": list(report.order) if report else [],
            "policy_digest": self.policy.digest if self.policy else None,
            "log_size": self.log.size if self.log else None,
            "checkpoint": self.log.checkpoint_note if self.log else None,
        }

    def rotate_checkpoint_key(self) -> Receipt:
        """Rotate the checkpoint key: announce the new key in the log under the old one.

        Returns:
            The announcement's receipt (its checkpoint is signed by both keys).

        Raises:
            SOPError: SOP is not READY, a rotation is staged, or the append failed.
        """
        self._ready_caps()
        log, old = _need(self.log, "log"), _need(self._checkpoint_signer, "keys")
        origin = _need(self.config, "config").origin
        receipt, self._checkpoint_signer = rotate_key(self.data_dir, log, origin, old, self.now())
        return receipt

    def _ready_caps(self) -> CapabilityRegistry:
        if self.capabilities is None or self.health is not Health.READY:
            raise SOPError(f"SOP is `{self.health}`; admin actions need `READY`")
        return self.capabilities

    def _log_admin(self, op: str, detail: dict[str, Any]) -> None:
        _need(self.store, "storage").log.append(
            canonical_json({"type": "admin", "op": op, "time": self.now(), **detail})
        )
