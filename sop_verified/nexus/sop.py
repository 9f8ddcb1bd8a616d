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
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sop_verified.core.capability import Capability, CapabilityRegistry
from sop_verified.core.health import Health
from sop_verified.core.kernel import OpsKernel
from sop_verified.core.obligations import ProofGate, Verdict, VerdictResult
from sop_verified.core.persistence import PersistenceController, ReadResult, RecoveryReport
from sop_verified.core.policy import (
    PolicyCheckReport,
    PolicySet,
    check_directory,
    check_policy_set,
)
from sop_verified.core.ports import Clock
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
    ConfigError,
    InputError,
    PolicyError,
    SOPError,
)
from sop_verified.events.nats_sink import NatsSinkControl
from sop_verified.events.subscribers import EventHub
from sop_verified.nexus import persistence as persistence_service
from sop_verified.nexus import protocols as protocol_service
from sop_verified.nexus.alarm_log import AlarmLog
from sop_verified.nexus.backends import open_backend
from sop_verified.nexus.config import (
    SOPConfig,
    init_data_dir,
    load_config,
    load_mac_key,
    postgres_config,
)
from sop_verified.nexus.log_service import attest, rotate_key
from sop_verified.nexus.protocols import ProtocolServices
from sop_verified.nexus.root import (
    SERVICE_GRAPH,
    Booted,
    EventSourceFactory,
    Services,
    compose,
    not_booted,
)
from sop_verified.nexus.witness_publisher import WitnessPublisher
from sop_verified.protocols.csp import CSP
from sop_verified.protocols.drac import DRAC
from sop_verified.protocols.emp import EMP
from sop_verified.storage.ports import StorageBackend
from sop_verified.storage.postgres import PostgresBackend
from sop_verified.tools.attest import PREDICATE_BOOT
from sop_verified.tools.canonical import canonical_json, sha256_hex
from sop_verified.tools.private_fs import write_private
from sop_verified.tools.tlog import TransparencyLog
from sop_verified.tools.tlog_store import Receipt

__all__ = ["MANIFEST_NAME", "SERVICE_GRAPH", "SOP", "PolicyRefusedError", "wall_clock"]

MANIFEST_NAME = "boot-manifest.json"


def wall_clock() -> int:
    """The real clock, integer Unix seconds."""
    return int(time.time())


class PolicyRefusedError(PolicyError):
    """A policy set failed its analyses and was not activated; carries the report."""

    def __init__(self, report: PolicyCheckReport) -> None:
        self.report = report
        firsts = [f"{f.code}: {f.message}" for f in report.errors][:3]
        super().__init__("policy set refused: " + "; ".join(firsts))


class SOP:
    """A booted SOP instance over one data directory.

    Use it as a context manager (``with SOP.boot(path) as sop: ...``) or call
    :meth:`close`. Anything but READY denies every request.
    """

    def __init__(self, data_dir: Path, booted: Booted, *, now: Clock) -> None:
        self.data_dir = data_dir
        self.now = now
        self.registry = booted.registry
        self.boot_report = booted.report
        self._services = booted.services
        self._closer = booted.closer
        self._partial_log = booted.log
        self._alarm_log: AlarmLog | None = None

    # ---- life cycle -------------------------------------------------------------------
    @staticmethod
    def init(data_dir: Path, *, dsn: str | None = None, schema: str = "sop") -> None:
        """Create a fresh data directory (configuration and keys).

        Args:
            data_dir: a new or empty directory.
            dsn: keep the state in this PostgreSQL database (schema ``schema``, created
                and migrated now) instead of SQLite in ``data_dir``.
            schema: the PostgreSQL schema (``[a-z_][a-z0-9_]{0,62}``).

        Raises:
            ConfigError: ``data_dir`` is already initialised, or ``schema`` is not a name.
            StorageError: the database cannot be reached or its schema version is unknown.
        """
        if dsn is None:
            init_data_dir(data_dir)
            return
        text = postgres_config(dsn, schema)  # refuses a bad schema name before anything
        if (data_dir / "sop.toml").exists():
            init_data_dir(data_dir, config_text=text)  # says it is already initialised
        held = PostgresBackend.open(dsn, schema=schema, migrate=True)
        try:
            size = held.log_store.log_tail()[0]
        finally:
            held.close()
        if size:  # another SOP's log: a second `sop init` would fork it
            raise ConfigError(
                f"schema `{schema}` already holds a log of {size:,} entries",
                accepted="a new `--schema`, or `--replica-of DIR` to serve that log too",
            )
        init_data_dir(data_dir, config_text=text)
        config = load_config(data_dir)
        open_backend(data_dir, config, state_key=load_mac_key(data_dir)[0], migrate=True).close()

    @classmethod
    def boot(
        cls,
        data_dir: Path,
        *,
        now: Clock = wall_clock,
        proof_gate: ProofGate | None = None,
        dsn: str | None = None,
        read_only: bool = False,
        events: EventSourceFactory | None = None,
    ) -> SOP:
        """Boot SOP on ``data_dir``; the result is READY or denies everything.

        Args:
            data_dir: a directory made by :meth:`init`.
            now: the clock (tests pin it).
            proof_gate: a proof gate to wire instead of SOP's own; the default is the
                isolated Z3 gate (:class:`~sop_verified.core.proofgate.Z3ProofGate`) the
                configuration's ``[proofs]`` table describes.
            dsn: another address for the configured PostgreSQL database (``sop serve --dsn``).
            read_only: change no byte of ``data_dir`` (SQLite only): the same services and
                checks, over a store opened read-only, with no boot manifest and nothing
                logged. Such a SOP answers :meth:`dry_run`; anything that must write (a
                decision to log, an admin action) fails, so :meth:`submit` answers DENY.
            events: what the NATS sink publishes, built from the log and the store; the
                default is the Ops_Event_Bus's projection of the log.

        Returns:
            The instance; check ``health`` — anything but READY denies every request.
        """
        booted = compose(
            data_dir, now=now, proof_gate=proof_gate, dsn=dsn, read_only=read_only, events=events
        )
        sop = cls(data_dir, booted, now=now)
        if not read_only:
            sop._write_manifest()
            sop._log_alarms()
        return sop

    def _log_alarms(self) -> None:
        """Log each integrity alarm from now on, and those boot's threads already raised."""
        if self._services is None:  # boot stopped short: there is no log to append to
            return
        alarms = AlarmLog(self._services.store.log.append, self.now)
        self._alarm_log = alarms
        for service, reason in self.registry.on_alarm(alarms.record):
            alarms.record(service, reason)

    def close(self) -> None:
        """Stop the writer and the solver workers, release the storage (in reverse boot order)."""
        if self._alarm_log is not None:  # its last alarms, while the log is still open
            self._alarm_log.close()
        if self._services is not None:
            self._services.writer.shutdown(wait=True)  # after the writer's last batch
        self._closer.close()

    def __enter__(self) -> SOP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def health(self) -> Health:
        """SOP's health; only READY admits anything."""
        return self.registry.health()

    @property
    def services(self) -> Services:
        """The booted services.

        Raises:
            SOPError: boot did not finish (the report says why).
        """
        if self._services is None:
            raise SOPError(
                f"SOP is `{self.health}`; boot did not finish: {self.boot_report.detail}"
            )
        return self._services

    # The services a caller may want by name (each raises SOPError if boot did not finish).
    @property
    def config(self) -> SOPConfig:
        """The validated configuration."""
        return self.services.config

    @property
    def store(self) -> StorageBackend:
        """The storage backend."""
        return self.services.store

    @property
    def log(self) -> TransparencyLog:
        """The signed log."""
        return self.services.log

    @property
    def capabilities(self) -> CapabilityRegistry:
        """The capability registry."""
        return self.services.capabilities

    @property
    def gate(self) -> ProofGate:
        """The proof gate."""
        return self.services.gate

    @property
    def kernel(self) -> OpsKernel:
        """The kernel (the bridge entry is :meth:`submit`)."""
        return self.services.kernel

    @property
    def persistence(self) -> PersistenceController:
        """The persistence controller."""
        return self.services.persistence

    @property
    def recovery(self) -> RecoveryReport:
        """What boot repair did."""
        return self.services.recovery

    @property
    def protocols(self) -> ProtocolServices:
        """The wired protocol controllers (the facades: :attr:`drac`, :attr:`emp`, :attr:`csp`)."""
        return self.services.protocols

    @property
    def witnesses(self) -> WitnessPublisher | None:
        """Publication through witnesses (None: none configured, or boot did not finish)."""
        return None if self._services is None else self._services.witnesses

    @property
    def events(self) -> EventHub:
        """The Ops_Event_Bus: ``sop.events.subscribe(types, start=..., max_queue=...)``.

        One CloudEvent per log entry, read from the signed log by index after each
        batch is durable (:mod:`sop_verified.events`); a slow subscriber never slows
        a decision.
        """
        return self.services.events

    @property
    def nats_sink(self) -> NatsSinkControl | None:
        """SOP's events to NATS JetStream (None: no ``[events.nats]``, or boot did not finish)."""
        return None if self._services is None else self._services.nats_sink

    @property
    def attestation_key(self) -> Ed25519PrivateKey:
        """The key SOP signs attestations with."""
        return self.services.keys.attestation

    @property
    def policy(self) -> PolicySet | None:
        """The active policy set (None: none activated, or boot did not finish)."""
        return None if self._services is None else self._services.policy.current

    # ---- the bridge ------------------------------------------------------------------
    def submit(self, request: Request | dict[str, Any] | bytes | str) -> Decision:
        """Decide one request (the Runtime Bridge entry); never raises."""
        if self._services is None:  # boot failed before the kernel existed: nothing is allowed
            return not_booted(self.health)
        return self._services.kernel.submit(request)

    def dry_run(self, request: Request | dict[str, Any] | bytes | str) -> Decision:
        """Decide ``request`` as :meth:`submit` would now, recording nothing; never raises.

        Every stage runs (health, capability, policy, obligations through the proof
        gate) but nothing is appended to the log: the answer carries ``dry_run`` and
        no log index or receipt, and authorizes nothing. On a SOP booted
        ``read_only`` no byte of the data directory changes either.
        """
        if self._services is None:
            return replace(not_booted(self.health), dry_run=True)
        return self._services.kernel.dry_run(request)

    def submit_batch(self, requests: Sequence[Request]) -> list[Decision]:
        """Decide parsed requests in one durable log batch (the server's group commit).

        Never raises.

        Each request meets the same stages as with :meth:`submit`; one answer per
        request, in order.
        """
        if self._services is None:
            return [not_booted(self.health) for _ in requests]
        pairs = self._services.kernel.submit_batch([(r, None) for r in requests])
        return [decision for decision, _ in pairs]

    def recorded_verdict(self, obligation: Obligation) -> VerdictResult | None:
        """The gate's verdict for ``obligation`` (cached: recorded verdicts are never re-solved)."""
        return None if self._services is None else self._services.gate.check(obligation)

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
        if self._services is None:
            return not_booted(self.health)
        services = self._services
        return persistence_service.persist(
            self.submit, services.persistence, request, data, services.linked_writes.persist
        )

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
        if self._services is None:
            return not_booted(self.health)
        return await persistence_service.persist_async(
            self.submit,
            self._services.persistence,
            request,
            data,
            linked=self._services.async_writes.persist,
            offload=self._offload,
        )

    async def _offload(self, call: Callable[[], Decision]) -> Decision:
        try:
            return await asyncio.get_running_loop().run_in_executor(self.services.writer, call)
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
        if self._services is None:
            return ReadResult(not_booted(self.health))
        return persistence_service.read(self.submit, self._services.persistence, request)

    def apply_retention(self) -> list[int]:
        """Apply every scope's retention rules now (admin plane); returns the tombstone indexes."""
        self._ready_caps()
        self._log_admin("persistence.retention", {})  # spec: INV-9 — recorded before the effect
        return self.persistence.apply_retention(self.now())

    @property
    def emp(self) -> EMP:
        """EMP's facade: ``submit_obligation(obligation, token=...)``, ``record_output``."""
        return EMP(self, None if self._services is None else self._services.protocols.emp)

    @property
    def drac(self) -> DRAC:
        """DRAC's facade: session phases and the artifact catalog (:mod:`..protocols.drac`)."""
        return DRAC(self.protocols.drac)

    @property
    def csp(self) -> CSP:
        """CSP's facade: eligible state, snapshots, resume (:mod:`..protocols.csp`)."""
        return CSP(self.protocols.csp)

    def register_emp_key(self, public_key: Ed25519PublicKey | bytes | str) -> str:
        """Register the Ed25519 key EMP signs verification outputs with (admin plane); logged.

        Returns:
            The key id (hex SHA-256 of the raw public key); registering it again changes nothing.
        """
        self._ready_caps()
        key = protocol_service.load_public_key(public_key)
        return protocol_service.register_emp_key(self.protocols, key, self.now())

    def revoke_emp_key(
        self, key_id: str, reason: str = "revoked by the operator"
    ) -> Receipt | None:
        """Revoke an EMP signing key (admin plane): logged, then no new output of it is recorded.

        Outputs it signed that were recorded before the revocation stay recorded and
        verifiable; from the revocation's log index on, one it signed is DENY
        ``revoked_key``.

        Returns:
            The revocation's receipt; None when the key was revoked already.

        Raises:
            ProtocolError: ``unknown_key``: no such key is registered.
        """
        self._ready_caps()
        return protocol_service.revoke_emp_key(self.protocols, key_id, reason, self.now())

    def revoke_snapshot(self, snapshot: str, reason: str = "revoked by the operator") -> None:
        """Revoke a CSP snapshot (admin plane); logged. It and its descendants never resume."""
        self._ready_caps()
        protocol_service.revoke_snapshot(self.protocols, snapshot, reason, self.now())

    def authorize_rollback(self, session: str, snapshot: str) -> Receipt:
        """Authorise resuming an older snapshot of ``session`` (admin plane); logged first."""
        self._ready_caps()
        services = self.protocols
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
        result = self.gate.check(obligation)
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
        at = {i: caps.revoked_at(i) for i in revoked}  # the rows' times: the log can rebuild them
        self._log_admin(
            "capability.revoked", {"capability_id": cap_id, "revoked": revoked, "at": at}
        )
        return revoked

    def check_policy(self, path: Path) -> PolicyCheckReport:
        """Run every analysis on the set at ``path`` against this data directory's scopes."""
        return check_directory(path, self.config.scopes.approved, self.policy)

    def activate_policy(self, path: Path) -> PolicyCheckReport:
        """Activate the set at ``path`` only if its analyses pass; logged.

        Raises:
            PolicyRefusedError: the set failed an analysis (with the counterexample).
            PolicyError: the set does not load.
        """
        services = self.services
        new = PolicySet.from_path(path)
        approved = services.config.scopes.approved
        report = check_policy_set(new, approved, services.policy.current, source=str(path))
        if not report.ok:  # spec: INV-6 — governance gates activation
            raise PolicyRefusedError(report)
        document = new.document.canonical_bytes()
        now = self.now()
        detail = {"policy_digest": new.digest, "activated_at": now}
        self._log_admin("policy.activate", detail)  # spec: INV-9
        services.store.policies.save_policy_set(new.digest, document, now)
        services.policy.activate(new)
        # Stored and in force: other replicas reload the set when they read this (ADR 0017).
        self._log_admin("policy.activated", {"policy_digest": new.digest})
        return report

    def status(self) -> dict[str, Any]:
        """Health, services, boot order and digests."""
        log = self._partial_log
        return {
            "health": str(self.health),
            "data_dir": str(self.data_dir),
            "services": {
                s.name: {"health": str(s.health), "detail": s.detail}
                for s in self.registry.services()
            },
            "boot_order": list(self.boot_report.order),
            "policy_digest": self.policy.digest if self.policy else None,
            "log_size": log.size if log else None,
            "checkpoint": log.checkpoint_note if log else None,
            **self._witness_status(),
            **self._nats_status(),
        }

    def _nats_status(self) -> dict[str, Any]:
        """``events_nats``: the sink's lag and broker state, when ``[events.nats]`` is set.

        A broker that is down shows here (and in ``/metrics``), never in ``health``: the
        stream is a projection of the log, which holds every event meanwhile.
        """
        sink = self.nats_sink
        if sink is None:
            return {}
        s = sink.stats()
        return {
            "events_nats": {
                "stream": s.stream,
                "servers": list(s.servers),  # passwords and tokens replaced by `***`
                "connected": s.connected,
                "events": s.size,  # the log's entries and checkpoints
                "acked": s.acked,
                "lag": s.lag,
                "outages": s.outages,
                "down_seconds": None if s.down_seconds is None else round(s.down_seconds, 1),
                "last_error": s.last_error,
                "published": s.published,
                "duplicates": s.duplicates,
                "resyncs": s.resyncs,
                "restarts": s.restarts,  # the sink's process died and was started again
            }
        }

    def _witness_status(self) -> dict[str, Any]:
        """``witnesses``: the published size and each witness's, when ``sop.toml`` names any."""
        publisher = self.witnesses
        if publisher is None:
            return {}
        published, witnesses = publisher.stats()
        return {
            "witnesses": {
                "published_size": published,
                "witnesses": [
                    {
                        "name": w.name,
                        "url": w.url,
                        "cosigned_size": w.cosigned_size,
                        "alarm": w.alarm,
                    }
                    for w in witnesses
                ],
            }
        }

    def rotate_checkpoint_key(self) -> Receipt:
        """Rotate the checkpoint key: announce the new key in the log under the old one.

        Returns:
            The announcement's receipt (its checkpoint is signed by both keys).

        Raises:
            SOPError: SOP is not READY, a rotation is staged, or the append failed.
        """
        self._ready_caps()
        services = self.services
        receipt, signer = rotate_key(
            self.data_dir,
            services.log,
            services.config.origin,
            services.keys.checkpoint,
            self.now(),
        )
        services.keys.use_checkpoint(signer)
        return receipt

    def record_state_repair(self, detail: dict[str, Any]) -> int:
        """Log that derived state was rebuilt from the log (``sop state repair``); its index.

        Raises:
            SOPError: SOP is not READY, or the append failed.
        """
        self._ready_caps()
        return self.store.log.append(
            canonical_json({"type": "admin", "op": "state.repair", "time": self.now(), **detail})
        )

    def _ready_caps(self) -> CapabilityRegistry:
        if self._services is None or self.health is not Health.READY:
            raise SOPError(f"SOP is `{self.health}`; admin actions need `READY`")
        return self._services.capabilities

    def _log_admin(self, op: str, detail: dict[str, Any]) -> None:
        self.store.log.append(
            canonical_json({"type": "admin", "op": op, "time": self.now(), **detail})
        )

    def _write_manifest(self) -> None:
        """Write the boot manifest (atomically) and, when READY, log it and attest it."""
        report = self.boot_report
        write_private(self.data_dir / MANIFEST_NAME, report.manifest)
        if self._services is None or report.health is not Health.READY:
            return
        services = self._services
        services.store.log.append(
            canonical_json({"type": "boot", "manifest": report.manifest_dict()})
        )
        attest(
            services.log,
            services.keys.attestation,
            "boot_manifest",
            subjects=[(MANIFEST_NAME, sha256_hex(report.manifest))],
            predicate_type=PREDICATE_BOOT,
            predicate=report.manifest_dict(),
        )
