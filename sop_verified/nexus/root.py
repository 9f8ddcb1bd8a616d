"""The composition root: the one place that builds SOP's services from the configuration.

The service graph is data (``SERVICE_GRAPH``); boot runs its steps in the one
order derived from it (INV-8). Each step is a plain function named in
``_STEPS`` that reads what the steps before it built and adds its own piece to
a :class:`_Build`; nothing is looked up by name. When every step started and
passed its self-test, the pieces are frozen into :class:`Services`, the object
SOP works with; a boot that stopped early has no ``Services`` at all, so
every request is denied (INV-8). Whatever a step opened is closed by the
build's exit stack, whether boot finished or not.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sop_verified.core.capability import CapabilityRegistry
from sop_verified.core.health import Health
from sop_verified.core.kernel import OpsKernel
from sop_verified.core.obligations import ProofGate, Verdict
from sop_verified.core.persistence import PersistenceController, RecoveryReport, index_entries
from sop_verified.core.persistence.pipeline import AsyncLinkedWrites, LinkedWrites
from sop_verified.core.policy import PolicySet
from sop_verified.core.ports import Clock
from sop_verified.core.proofgate import GateConfig, Z3ProofGate
from sop_verified.core.proofgate.derive import scope_containment
from sop_verified.core.proofgate.sealed import SealedVerdictStore, derive_seal_key
from sop_verified.core.request import (
    PERSIST_ACTIONS,
    Decision,
    Obligation,
    Permission,
    Reason,
    Request,
    Stage,
)
from sop_verified.errors import CapabilityError, IntegrityError
from sop_verified.events.boundary import TelemetryBoundary
from sop_verified.events.model import EventSource
from sop_verified.events.nats_cursor import CURSOR_NAME
from sop_verified.events.nats_sink import NatsSink, NatsSinkControl
from sop_verified.events.source import LogEventSource
from sop_verified.events.subscribers import EventHub
from sop_verified.nexus import persistence as persistence_service
from sop_verified.nexus import protocols as protocol_service
from sop_verified.nexus.backends import DB_NAME, open_backend, storage_where
from sop_verified.nexus.boot import BootReport, boot
from sop_verified.nexus.config import SOPConfig, load_config, load_mac_key
from sop_verified.nexus.keys import load_attestation_key, load_checkpoint_signer
from sop_verified.nexus.log_service import open_signed_log
from sop_verified.nexus.nats_process import NatsSinkProcess
from sop_verified.nexus.registry import Service, ServiceRegistry
from sop_verified.nexus.replicas import ForeignState
from sop_verified.nexus.state_rebuild import locate
from sop_verified.nexus.telemetry_config import telemetry_boundary
from sop_verified.nexus.verdict_attest import AttestingVerdictStore, UnrecordedVerdictStore
from sop_verified.nexus.witness_publisher import WITNESSED_NAME, WitnessPublisher
from sop_verified.storage.ports import StorageBackend
from sop_verified.storage.state_seal import TableMismatchError
from sop_verified.tools.signed_note import Signer
from sop_verified.tools.tlog import TransparencyLog

__all__ = [
    "DB_NAME",
    "SERVICE_GRAPH",
    "ActivePolicy",
    "Booted",
    "EventSourceFactory",
    "Keys",
    "Services",
    "compose",
    "not_booted",
]


# The declared service graph (service -> dependencies); boot order derives from it.
SERVICE_GRAPH: dict[str, tuple[str, ...]] = {
    "config": (),
    "storage": ("config", "keys"),
    "keys": ("config",),
    "log": ("config", "keys", "storage"),
    "state": ("config", "log", "storage"),
    "capabilities": ("keys", "state", "storage"),
    "policy": ("config", "state", "storage"),
    "proof_gate": ("keys", "log", "state", "storage"),
    "kernel": ("capabilities", "log", "policy", "proof_gate"),
    "persistence": ("config", "log", "state", "storage"),
    "protocols": ("config", "keys", "log", "persistence", "state", "storage"),
    "witness": ("config", "log"),
    "events_nats": ("config", "keys", "log", "storage"),
}

EventSourceFactory = Callable[[TransparencyLog, StorageBackend], EventSource]
"""Builds the events the NATS sink publishes from the opened log and store (tests and the
bench pass one; SOP's own is the Ops_Event_Bus's projection of the log)."""

_T = TypeVar("_T")


def not_booted(health: Health) -> Decision:
    """The answer of a SOP whose boot did not finish: DENY at the health stage (INV-8)."""
    reason = Reason(Stage.HEALTH, "not_ready", f"SOP is `{health}`; boot did not finish")
    return Decision(Permission.DENY, (reason,))


class Keys:
    """The key material SOP holds: the capability MAC key, the checkpoint and attestation keys.

    The checkpoint signer is the one piece that changes after boot (a key
    rotation); it is swapped under a lock.
    """

    def __init__(
        self, mac_key: bytes, mac_key_id: str, checkpoint: Signer, attestation: Ed25519PrivateKey
    ) -> None:
        self.mac_key = mac_key
        self.mac_key_id = mac_key_id
        self.attestation = attestation
        self._checkpoint = checkpoint
        self._lock = threading.Lock()

    @property
    def checkpoint(self) -> Signer:
        """The checkpoint key in use."""
        return self._checkpoint

    def use_checkpoint(self, signer: Signer) -> None:
        """Switch to ``signer`` (after boot finished a rotation, or after ``rotate``)."""
        with self._lock:
            self._checkpoint = signer

    def ids(self) -> dict[str, str]:
        """The key ids the boot manifest records."""
        return {"capability_mac": self.mac_key_id, "checkpoint": self._checkpoint.verifier().vkey}


class ActivePolicy:
    """The active policy set: None until one is activated (then everything is denied)."""

    def __init__(self, current: PolicySet | None) -> None:
        self._current = current

    @property
    def current(self) -> PolicySet | None:
        """The set in force now."""
        return self._current

    def activate(self, new: PolicySet) -> None:
        """Put ``new`` in force; the caller logged the activation first (INV-9)."""
        self._current = new


class _Late(Generic[_T]):
    """A value wired after the one that needs it (the kernel's submit, the protocols)."""

    def __init__(self) -> None:
        self.value: _T | None = None


@dataclass(frozen=True, slots=True)
class Services:
    """Every service of a booted SOP, built in the boot order; nothing here is optional."""

    config: SOPConfig
    store: StorageBackend
    keys: Keys
    log: TransparencyLog
    capabilities: CapabilityRegistry
    policy: ActivePolicy
    gate: ProofGate
    kernel: OpsKernel
    persistence: PersistenceController
    recovery: RecoveryReport
    protocols: protocol_service.ProtocolServices
    linked_writes: LinkedWrites
    async_writes: AsyncLinkedWrites
    writer: ThreadPoolExecutor
    witnesses: WitnessPublisher | None
    """Publication through witnesses; None when ``sop.toml`` names none."""
    replicas: ForeignState
    """What other replicas of a shared log appended (never told on a log one process writes)."""
    events: EventHub
    """The Ops_Event_Bus's in-process subscribers, fed after each durable log batch."""
    nats_sink: NatsSinkControl | None
    """SOP's events to NATS JetStream; None when ``sop.toml`` has no ``[events.nats]``."""


@dataclass(frozen=True, slots=True)
class Booted:
    """What :func:`compose` hands back: the services (None unless boot finished) and its report.

    ``log`` is the log as far as boot got (for ``status``), ``closer`` closes whatever boot
    opened.
    """

    services: Services | None
    registry: ServiceRegistry
    report: BootReport
    closer: ExitStack
    log: TransparencyLog | None


class _Build:
    """The pieces built so far. An attribute is set by its step; a step reads only the steps
    its service depends on, which the boot order ran first (INV-8)."""

    config: SOPConfig
    store: StorageBackend
    keys: Keys
    log: TransparencyLog
    capabilities: CapabilityRegistry
    policy: ActivePolicy
    gate: ProofGate
    kernel: OpsKernel
    persistence: PersistenceController
    recovery: RecoveryReport
    protocols: protocol_service.ProtocolServices
    witnesses: WitnessPublisher | None
    replicas: ForeignState
    telemetry: TelemetryBoundary
    events: EventHub
    nats_sink: NatsSinkControl | None

    def __init__(
        self,
        data_dir: Path,
        now: Clock,
        registry: ServiceRegistry,
        gate: ProofGate | None,
        dsn: str | None = None,
        *,
        read_only: bool = False,
        events: EventSourceFactory | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.dsn = dsn
        self.read_only = read_only
        self.event_source = events
        self.now = now
        self.registry = registry
        self.gate_override = gate
        self.closer = ExitStack()
        self.kernel_late: _Late[OpsKernel] = _Late()
        self.protocols_late: _Late[protocol_service.ProtocolServices] = _Late()
        self.witnesses_late: _Late[WitnessPublisher] = _Late()
        self.facts: dict[str, Any] = {"config_digest": None, "policy_digest": None, "key_ids": {}}
        self.opened_log: TransparencyLog | None = None  # for the status of a boot that stopped
        self.events_hub: EventHub | None = None  # told each durable size once the log is open
        self.nats_late: _Late[NatsSinkControl] = _Late()

    def submit(self, request: Request | dict[str, Any] | bytes | str) -> Decision:
        """The bridge entry the protocols call: before the kernel exists, everything is DENY."""
        kernel = self.kernel_late.value
        if kernel is None:
            return not_booted(self.registry.health())
        return kernel.submit(request)

    def checkpointed(self, size: int, note: str) -> None:
        """The log's checkpoint is durable and anchored: tell the witness publisher, if any,
        the event subscribers and the NATS sink (a size and a wake-up: nothing is projected
        or sent here)."""
        publisher = self.witnesses_late.value
        if publisher is not None:
            publisher.notify(size, note)
        hub = self.events_hub
        if hub is not None:
            hub.notify()
        sink = self.nats_late.value
        if sink is not None:
            sink.wake()

    def derive(self, request: Request) -> list[Obligation]:
        """SOP's own obligations: persist targets in the approved scopes (INV-4), DRAC phase
        order, CSP resume lineage (INV-7; :mod:`sop_verified.protocols.obligations`)."""
        out = protocol_service.derive(self.protocols_late.value, request)
        if request.action not in PERSIST_ACTIONS:
            return out
        return [scope_containment(request.resource, self.config.scopes.approved), *out]  # INV-4


# ---- the steps, one start and one self-test per service --------------------------------------
def _start_config(b: _Build) -> None:
    b.config = load_config(b.data_dir)
    b.facts["config_digest"] = b.config.digest()


def _test_config(b: _Build) -> None:
    if load_config(b.data_dir) != b.config:
        raise IntegrityError("the configuration changed while booting")


def _start_storage(b: _Build) -> None:
    b.store = open_backend(
        b.data_dir, b.config, state_key=b.keys.mac_key, dsn=b.dsn, read_only=b.read_only
    )
    b.closer.callback(b.store.close)
    b.store.set_entry_indexer(index_entries)  # the persistence index follows the log


def _test_storage(b: _Build) -> None:
    b.store.self_test()


def _start_keys(b: _Build) -> None:
    mac_key, mac_key_id = load_mac_key(b.data_dir)
    signer = load_checkpoint_signer(b.data_dir, b.config.origin)
    b.keys = Keys(mac_key, mac_key_id, signer, load_attestation_key(b.data_dir))
    b.facts["key_ids"] = b.keys.ids()
    b.telemetry = telemetry_boundary(b.data_dir, b.config.telemetry)  # refuses `hash` sans key


def _test_keys(b: _Build) -> None:
    if len(b.keys.mac_key) != 32:
        raise IntegrityError("the capability key is not 32 bytes")
    signer = b.keys.checkpoint
    signer.verifier().verify(b"sop-canary", signer.sign(b"sop-canary"))
    key = b.keys.attestation
    key.public_key().verify(key.sign(b"sop-canary"), b"sop-canary")


def _start_log(b: _Build) -> None:
    b.log, signer = open_signed_log(  # refuses a log cut back behind its anchor (INV-5)
        b.data_dir,
        b.store,
        b.config.origin,
        b.keys.checkpoint,
        on_anchor_failure=lambda reason: b.registry.raise_alarm("log", reason),
        after_anchor=b.checkpointed,  # witnesses, subscribers, NATS: off the path
        read_only=b.read_only,
    )
    b.keys.use_checkpoint(signer)  # a rotation a crash interrupted may have finished
    b.opened_log = b.log
    b.facts["key_ids"] = b.keys.ids()
    store_log = b.store.log
    b.events = EventHub(LogEventSource(lambda: store_log.opened, b.telemetry))
    b.events_hub = b.events
    b.closer.callback(b.events.close)  # subscriptions end before the store closes


def _test_log(b: _Build) -> None:
    b.store.log.verify_tail()


def _start_state(b: _Build) -> None:
    """Authenticate every derived table against the state seal and the log (INV-11).

    Every service that reads derived state (capabilities, policy, verdicts,
    the persistence index, protocol records) starts after this one, so none
    of them ever reads a row that was not checked first.
    """
    config = b.config.digest()
    try:  # spec: INV-11 — derived state and sop.toml authenticated before any service reads them
        b.store.verify_state(b.log.size, config)
    except TableMismatchError as exc:  # say where, from the log, before refusing to boot
        if b.config.postgresql is not None:
            raise IntegrityError(
                f"{exc} in {storage_where(b.config, b.dsn)}; rebuilding it from the log is"
                " not yet built for PostgreSQL: restore the schema from a backup"
            ) from None
        where = locate(b.data_dir / DB_NAME, b.keys.mac_key, b.log.size)
        raise IntegrityError(
            f"{exc}; {where}; `sop state repair` rebuilds it from the log"
        ) from None
    if b.log.size == 0 and not b.read_only:
        b.store.accept_config(config)  # a fresh log: the first boot accepts its configuration


def _test_state(b: _Build) -> None:
    """Nothing more to test: the start step checked every row against the seal."""


def _start_capabilities(b: _Build) -> None:
    b.capabilities = CapabilityRegistry(
        b.store.capabilities, b.keys.mac_key, b.keys.mac_key_id, b.now
    )


def _test_capabilities(b: _Build) -> None:
    canary = Request(
        request_id="boot-canary",
        principal="sop-canary",
        action="artifact.read",
        resource="boot/canary",
    )
    try:
        b.capabilities.check("sopcap1.forged.e30.AAAA", canary)
    except CapabilityError:
        return
    raise IntegrityError("the capability registry accepted a forged token")


def _start_policy(b: _Build) -> None:
    stored = b.store.policies.load_active_policy_set()
    if stored is None:
        b.policy = ActivePolicy(None)  # no set: everything is denied by default
        return
    digest, document = stored
    policy = PolicySet.from_canonical(document)
    if policy.digest != digest:
        raise IntegrityError(f"stored policy set digest `{digest}` does not match its document")
    b.policy = ActivePolicy(policy)
    b.facts["policy_digest"] = policy.digest


def _test_policy(b: _Build) -> None:
    policy = b.policy.current
    if policy is None:
        return
    canary = Request(
        request_id="boot-canary",
        principal="sop-canary",
        action="policy.activate",
        resource="policies/canary",
        channel="bridge",
    )
    if policy.evaluate(canary).allowed:  # spec: INV-6
        raise IntegrityError("the active policy set permits an admin action through the bridge")


def _start_proof_gate(b: _Build) -> None:
    if b.gate_override is not None:
        b.gate = b.gate_override
        return
    proofs = b.config.proofs
    sealed = SealedVerdictStore(b.store.verdicts, derive_seal_key(b.keys.mac_key))
    gate = Z3ProofGate(
        GateConfig(
            rlimit=proofs.rlimit, workers=proofs.workers, cross_check=frozenset(proofs.cross_check)
        ),
        store=UnrecordedVerdictStore(sealed)  # read-only: new verdicts stay in memory
        if b.read_only
        else AttestingVerdictStore(sealed, b.log, b.keys.attestation),
        on_alarm=lambda reason: b.registry.raise_alarm("proof_gate", reason),  # spec: INV-3
    )
    b.closer.callback(gate.close)
    b.gate = gate


def _test_proof_gate(b: _Build) -> None:
    head = "(set-logic QF_LIA)\n(declare-const x Int)\n"
    sat = Obligation(id="boot-canary", format="smt2", source=head + "(assert (= x 1))\n")
    if b.gate.check(sat).verdict is Verdict.PROVED:  # spec: INV-1 — never PROVED when false
        raise IntegrityError("the proof gate PROVED a satisfiable obligation")
    if b.gate_override is None:  # SOP's own gate must also prove what is true
        unsat = Obligation(id="boot-canary", format="smt2", source=head + "(assert (> x x))\n")
        result = b.gate.check(unsat)
        if result.verdict is not Verdict.PROVED:
            raise IntegrityError(
                f"the proof gate cannot prove `x > x` is impossible: {result.reason}"
            )


def _start_kernel(b: _Build) -> None:
    policy = b.policy
    b.kernel = OpsKernel(
        capabilities=b.capabilities,
        policy=lambda: policy.current,
        proof_gate=b.gate,
        log=b.store.log,
        health=b.registry.health,
        now=b.now,
        derive=b.derive,
    )
    b.kernel_late.value = b.kernel
    # Another replica's revocations and policy activations put in force before this
    # replica logs a decision (ADR 0017); reloaded once now, so none before the hook is missed.
    foreign = ForeignState(b.store, b.capabilities, policy.activate)
    b.log.follow_foreign(foreign)
    b.replicas = foreign
    if b.config.postgresql is not None:
        foreign.reload()


def _test_kernel(b: _Build) -> None:
    canary = {
        "request_id": "boot-canary",
        "principal": "sop-canary",
        "action": "artifact.read",
        "resource": "boot/canary",
    }
    if b.kernel.dry_run(canary).allowed:
        raise IntegrityError("the kernel allowed a request without a capability")


def _start_persistence(b: _Build) -> None:
    b.persistence, b.recovery = persistence_service.start(
        b.data_dir,
        b.config,
        b.store,
        b.registry.health,
        b.now,
        on_alarm=lambda reason: b.registry.raise_alarm("persistence", reason),  # spec: INV-5
        read_only=b.read_only,
    )
    b.closer.callback(b.persistence.close)


def _test_persistence(b: _Build) -> None:
    persistence_service.self_test(b.store.persist, b.recovery.through)


def _start_protocols(b: _Build) -> None:
    b.protocols = protocol_service.start(
        config=b.config,
        store=b.store,
        log=b.log,
        persistence=b.persistence,
        key=b.keys.attestation,
        submit=b.submit,
        now=b.now,
    )
    if not b.read_only:  # its close raises the record index's mark: a write
        b.closer.callback(b.protocols.close)
    b.protocols_late.value = b.protocols


def _test_protocols(b: _Build) -> None:
    protocol_service.self_test(b.protocols)


def _start_witness(b: _Build) -> None:
    """Publish checkpoints through the configured witnesses (none configured: nothing to do)."""
    b.witnesses = None
    if b.config.witnesses is None or b.read_only:  # read-only: it appends nothing to publish
        return
    publisher = WitnessPublisher(  # refuses a log behind its published checkpoint (INV-5)
        b.log,
        b.config.witnesses,
        b.data_dir / WITNESSED_NAME,
        on_alarm=lambda reason: b.registry.raise_alarm("witness", reason),  # spec: INV-5
    )
    b.closer.callback(publisher.close)
    b.witnesses = publisher
    b.witnesses_late.value = publisher
    publisher.start()


def _test_witness(b: _Build) -> None:
    """Nothing to test before the witnesses answer: a refusal raises the alarm when it comes."""


def _start_events_nats(b: _Build) -> None:
    """Publish SOP's events to NATS JetStream (no ``[events.nats]``: nothing to do).

    Never a boot failure for the broker's sake: the sink connects on its own, and a
    broker that is down leaves SOP READY (the stream is a projection of the log). It
    runs in a process of its own (:mod:`sop_verified.nexus.nats_process`), off the
    interpreter lock the deciding threads share; an event source given to the boot
    (tests, the bench's minimal events) is published from a thread of this process.
    Read-only, it is left out: it would write its cursor and has nothing new to send.
    """
    b.nats_sink = None
    events = b.config.events
    if events is None or events.nats is None or b.read_only:
        return
    sink: NatsSinkControl
    if b.event_source is not None:
        source = b.event_source(b.log, b.store)
        sink = NatsSink(source, events.nats, b.data_dir / CURSOR_NAME)
    else:
        hub = b.events  # the same events the child reads: its count, for the lag
        sink = NatsSinkProcess(b.data_dir, events.nats, events=lambda: hub.size, dsn=b.dsn)
    b.closer.callback(sink.close)  # before the store closes: the reverse of the boot order
    b.nats_sink = sink
    b.nats_late.value = sink
    sink.start()


def _test_events_nats(b: _Build) -> None:
    """Nothing to test that the broker decides: its outages are reported, never fatal."""


_Step = Callable[[_Build], None]
_STEPS: Mapping[str, tuple[_Step, _Step]] = {
    "config": (_start_config, _test_config),
    "storage": (_start_storage, _test_storage),
    "keys": (_start_keys, _test_keys),
    "log": (_start_log, _test_log),
    "state": (_start_state, _test_state),
    "capabilities": (_start_capabilities, _test_capabilities),
    "policy": (_start_policy, _test_policy),
    "proof_gate": (_start_proof_gate, _test_proof_gate),
    "kernel": (_start_kernel, _test_kernel),
    "persistence": (_start_persistence, _test_persistence),
    "protocols": (_start_protocols, _test_protocols),
    "witness": (_start_witness, _test_witness),
    "events_nats": (_start_events_nats, _test_events_nats),
}


def compose(
    data_dir: Path,
    *,
    now: Clock,
    proof_gate: ProofGate | None = None,
    dsn: str | None = None,
    read_only: bool = False,
    events: EventSourceFactory | None = None,
) -> Booted:
    """Build and boot every service of ``SERVICE_GRAPH`` in its one order (INV-8).

    Args:
        data_dir: a directory made by ``SOP.init``.
        now: the clock.
        proof_gate: a gate to wire instead of SOP's Z3 gate (tests); SOP's own is the default.
        dsn: another address for the configured PostgreSQL database (``sop serve --dsn``).
        read_only: build every service without writing a byte of the data directory
            (a dry run): the store opens read-only, new proof verdicts stay in memory,
            boot repair, a staged key rotation and the witness publisher are refused
            or left out; whatever would need a write fails boot instead.
        events: what the NATS sink publishes, built from the log and the store (tests);
            the default is the Ops_Event_Bus's projection, with the telemetry boundary.

    Returns:
        The services (None unless every service started and passed its self-test), the
        registry with each service's health, and the boot report with the manifest.
    """
    registry = ServiceRegistry()
    build = _Build(data_dir, now, registry, proof_gate, dsn, read_only=read_only, events=events)
    for name, deps in SERVICE_GRAPH.items():
        start, test = _STEPS[name]
        registry.register(Service(name, deps, _bind(start, build), _bind(test, build)))
    report = boot(registry, now=now, facts=lambda: dict(build.facts, service_graph=_graph()))
    return Booted(
        services=_freeze(build) if report.failed is None else None,
        registry=registry,
        report=report,
        closer=build.closer,
        log=build.opened_log,
    )


def _bind(step: _Step, build: _Build) -> Callable[[], None]:
    return lambda: step(build)


def _graph() -> dict[str, list[str]]:
    return {k: list(v) for k, v in sorted(SERVICE_GRAPH.items())}


def _freeze(b: _Build) -> Services:
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sop-writer")
    return Services(
        config=b.config,
        store=b.store,
        keys=b.keys,
        log=b.log,
        capabilities=b.capabilities,
        policy=b.policy,
        gate=b.gate,
        kernel=b.kernel,
        persistence=b.persistence,
        recovery=b.recovery,
        protocols=b.protocols,
        linked_writes=LinkedWrites(b.persistence, b.kernel.submit_batch),
        async_writes=AsyncLinkedWrites(b.persistence, b.kernel.submit_batch, writer),
        writer=writer,
        witnesses=b.witnesses,
        replicas=b.replicas,
        events=b.events,
        nats_sink=b.nats_sink,
    )
