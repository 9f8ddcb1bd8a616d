"""The services SOP boots, as a mixin: each service's start and self-test, in one place.

:class:`~sop_verified.nexus.sop.SOP` inherits these; the declared graph
(``SERVICE_GRAPH``) names them and boot runs them in its one order (INV-8).
Each self-test uses a canary that must come out the safe way, so a broken
service leaves SOP not READY.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sop_verified.core.capability import CapabilityRegistry
from sop_verified.core.health import Health
from sop_verified.core.kernel import OpsKernel
from sop_verified.core.obligations import ProofGate, Verdict
from sop_verified.core.persistence import (
    PersistenceController,
    RecoveryReport,
    index_entries,
)
from sop_verified.core.persistence.pipeline import AsyncLinkedWrites, LinkedWrites
from sop_verified.core.policy import (
    PolicySet,
)
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
from sop_verified.errors import (
    CapabilityError,
    IntegrityError,
    SOPError,
)
from sop_verified.nexus import persistence as persistence_service
from sop_verified.nexus import protocols as protocol_service
from sop_verified.nexus.boot import BootReport
from sop_verified.nexus.config import SOPConfig, load_config, load_mac_key
from sop_verified.nexus.keys import load_attestation_key, load_checkpoint_signer
from sop_verified.nexus.log_service import attest, open_signed_log
from sop_verified.nexus.registry import ServiceRegistry
from sop_verified.nexus.verdict_attest import AttestingVerdictStore
from sop_verified.storage.ports import StorageBackend
from sop_verified.storage.sqlite import SQLiteBackend
from sop_verified.tools.attest import PREDICATE_BOOT
from sop_verified.tools.canonical import canonical_json, sha256_hex
from sop_verified.tools.signed_note import Signer
from sop_verified.tools.tlog import TransparencyLog

__all__ = ["SERVICE_GRAPH", "ServiceWiring"]

_T = TypeVar("_T")
DB_NAME = "sop.db"
MANIFEST_NAME = "boot-manifest.json"

# The declared service graph (service -> dependencies); boot order derives from it.
SERVICE_GRAPH: dict[str, tuple[str, ...]] = {
    "config": (),
    "storage": ("config",),
    "keys": ("config",),
    "log": ("config", "keys", "storage"),
    "capabilities": ("keys", "storage"),
    "policy": ("config", "storage"),
    "proof_gate": ("keys", "log", "storage"),
    "kernel": ("capabilities", "log", "policy", "proof_gate"),
    "persistence": ("config", "log", "storage"),
    "protocols": ("config", "keys", "log", "persistence", "storage"),
}


class ServiceWiring:
    """SOP's services: the state they build and how each one starts and tests itself."""

    def __init__(self, data_dir: Path, *, now: Clock, proof_gate: ProofGate | None) -> None:
        self.data_dir = data_dir
        self.now = now
        self.registry = ServiceRegistry()
        self._gate_override = proof_gate
        self.config: SOPConfig | None = None
        self.store: StorageBackend | None = None
        self.capabilities: CapabilityRegistry | None = None
        self.policy: PolicySet | None = None
        self.gate: ProofGate | None = None
        self.kernel: OpsKernel | None = None
        self.boot_report: BootReport | None = None
        self.log: TransparencyLog | None = None
        self._key_id = ""
        self._checkpoint_signer: Signer | None = None
        self.attestation_key: Ed25519PrivateKey | None = None
        self.persistence: PersistenceController | None = None
        self.recovery: RecoveryReport | None = None
        self.linked_writes: LinkedWrites | None = None  # set once boot has wired both sides
        self.async_writes: AsyncLinkedWrites | None = None  # likewise, for coroutines
        # batches of coroutines' writes and their blocking fallbacks run here, one at a time;
        # its thread starts at the first use
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sop-writer")
        self.protocols: protocol_service.ProtocolServices | None = None

    # ---- services -------------------------------------------------------------------
    def _start_config(self) -> None:
        self.config = load_config(self.data_dir)

    def _test_config(self) -> None:
        if load_config(self.data_dir) != _need(self.config, "config"):
            raise IntegrityError("the configuration changed while booting")

    def _start_storage(self) -> None:
        self.store = SQLiteBackend.open(self.data_dir / DB_NAME)
        self.store.set_entry_indexer(index_entries)  # the persistence index follows the log

    def _test_storage(self) -> None:
        _need(self.store, "storage").self_test()

    def _start_keys(self) -> None:
        self._mac_key, self._key_id = load_mac_key(self.data_dir)
        origin = _need(self.config, "config").origin
        self._checkpoint_signer = load_checkpoint_signer(self.data_dir, origin)
        self.attestation_key = load_attestation_key(self.data_dir)

    def _test_keys(self) -> None:
        if len(self._mac_key) != 32:
            raise IntegrityError("the capability key is not 32 bytes")
        signer = _need(self._checkpoint_signer, "keys")
        signer.verifier().verify(b"sop-canary", signer.sign(b"sop-canary"))
        key = _need(self.attestation_key, "keys")
        key.public_key().verify(key.sign(b"sop-canary"), b"sop-canary")

    def _start_log(self) -> None:
        store, origin = _need(self.store, "storage"), _need(self.config, "config").origin
        signer = _need(self._checkpoint_signer, "keys")
        self.log, self._checkpoint_signer = open_signed_log(self.data_dir, store, origin, signer)

    def _test_log(self) -> None:
        _need(self.store, "storage").log.verify_tail()

    def _start_capabilities(self) -> None:
        store = _need(self.store, "storage")
        self.capabilities = CapabilityRegistry(
            store.capabilities, self._mac_key, self._key_id, self.now
        )

    def _test_capabilities(self) -> None:
        caps = _need(self.capabilities, "capabilities")
        canary = Request(
            request_id="boot-canary",
            principal="sop-canary",
            action="artifact.read",
            resource="boot/canary",
        )
        try:
            caps.check("sopcap1.forged.e30.AAAA", canary)
        except CapabilityError:
            return
        raise IntegrityError("the capability registry accepted a forged token")

    def _start_policy(self) -> None:
        stored = _need(self.store, "storage").policies.load_active_policy_set()
        if stored is not None:
            digest, document = stored
            self.policy = PolicySet.from_canonical(document)
            if self.policy.digest != digest:
                raise IntegrityError(
                    f"stored policy set digest `{digest}` does not match its document"
                )

    def _test_policy(self) -> None:
        if self.policy is None:
            return  # no set: everything is denied by default
        canary = Request(
            request_id="boot-canary",
            principal="sop-canary",
            action="policy.activate",
            resource="policies/canary",
            channel="bridge",
        )
        if self.policy.evaluate(canary).allowed:  # spec: INV-6
            raise IntegrityError("the active policy set permits an admin action through the bridge")

    def _start_proof_gate(self) -> None:
        if self._gate_override is not None:
            self.gate = self._gate_override
            return
        proofs = _need(self.config, "config").proofs
        self.gate = Z3ProofGate(
            GateConfig(
                rlimit=proofs.rlimit,
                workers=proofs.workers,
                cross_check=frozenset(proofs.cross_check),
            ),
            store=AttestingVerdictStore(
                SealedVerdictStore(
                    _need(self.store, "storage").verdicts, derive_seal_key(self._mac_key)
                ),
                _need(self.log, "log"),
                _need(self.attestation_key, "keys"),
            ),
            on_alarm=lambda reason: self.registry.raise_alarm("proof_gate", reason),  # spec: INV-3
        )

    def _test_proof_gate(self) -> None:
        gate = _need(self.gate, "proof gate")
        head = "(set-logic QF_LIA)\n(declare-const x Int)\n"
        sat = Obligation(id="boot-canary", format="smt2", source=head + "(assert (= x 1))\n")
        if gate.check(sat).verdict is Verdict.PROVED:  # spec: INV-1 — never PROVED when false
            raise IntegrityError("the proof gate PROVED a satisfiable obligation")
        if isinstance(gate, Z3ProofGate):
            unsat = Obligation(id="boot-canary", format="smt2", source=head + "(assert (> x x))\n")
            result = gate.check(unsat)
            if result.verdict is not Verdict.PROVED:
                raise IntegrityError(
                    f"the proof gate cannot prove `x > x` is impossible: {result.reason}"
                )

    def _start_persistence(self) -> None:
        self.persistence, self.recovery = persistence_service.start(
            self.data_dir,
            _need(self.config, "config"),
            _need(self.store, "storage"),
            self.registry.health,
            self.now,
        )

    def _test_persistence(self) -> None:
        persistence_service.self_test(_need(self.persistence, "persistence"))

    def _start_protocols(self) -> None:
        self.protocols = protocol_service.start(
            config=_need(self.config, "config"),
            store=_need(self.store, "storage"),
            log=_need(self.log, "log"),
            persistence=_need(self.persistence, "persistence"),
            key=_need(self.attestation_key, "keys"),
            submit=self._bridge_submit,
            now=self.now,
        )

    def _test_protocols(self) -> None:
        protocol_service.self_test(_need(self.protocols, "protocols"))

    def _bridge_submit(self, request: Request | dict[str, Any] | bytes | str) -> Decision:
        """The bridge entry: the kernel decides; before the kernel booted, everything is DENY."""
        if self.kernel is None:  # boot failed before the kernel existed: nothing is allowed
            return self._not_booted()
        return self.kernel.submit(request)

    def _not_booted(self) -> Decision:
        reason = Reason(
            Stage.HEALTH, "not_ready", f"SOP is `{self.registry.health()}`; boot did not finish"
        )
        return Decision(Permission.DENY, (reason,))

    def _start_kernel(self) -> None:
        self.kernel = OpsKernel(
            capabilities=_need(self.capabilities, "capabilities"),
            policy=lambda: self.policy,
            proof_gate=_need(self.gate, "proof gate"),
            log=_need(self.store, "storage").log,
            health=self.registry.health,
            now=self.now,
            derive=self._derive_obligations,
        )

    def _derive_obligations(self, request: Request) -> list[Obligation]:
        """SOP's own obligations: persist targets in the approved scopes (INV-4), DRAC phase
        order, CSP resume lineage (INV-7; :mod:`sop_verified.protocols.obligations`)."""
        out = protocol_service.derive(self.protocols, request)
        if request.action not in PERSIST_ACTIONS:
            return out
        approved = _need(self.config, "config").scopes.approved
        return [scope_containment(request.resource, approved), *out]  # spec: INV-4

    def _test_kernel(self) -> None:
        kernel = _need(self.kernel, "kernel")
        canary = {
            "request_id": "boot-canary",
            "principal": "sop-canary",
            "action": "artifact.read",
            "resource": "boot/canary",
        }
        if kernel.dry_run(canary).allowed:
            raise IntegrityError("the kernel allowed a request without a capability")

    # ---- helpers --------------------------------------------------------------------
    def _facts(self) -> dict[str, Any]:
        return {
            "config_digest": self.config.digest() if self.config else None,
            "policy_digest": self.policy.digest if self.policy else None,
            "key_ids": self._key_ids(),
            "service_graph": {k: list(v) for k, v in sorted(SERVICE_GRAPH.items())},
        }

    def _write_manifest(self, report: BootReport) -> None:
        tmp = self.data_dir / (MANIFEST_NAME + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(report.manifest)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.data_dir / MANIFEST_NAME)
        if self.store is not None and report.health is Health.READY:
            self.store.log.append(
                canonical_json({"type": "boot", "manifest": report.manifest_dict()})
            )
            log, key = _need(self.log, "log"), _need(self.attestation_key, "keys")
            attest(
                log,
                key,
                "boot_manifest",
                subjects=[(MANIFEST_NAME, sha256_hex(report.manifest))],
                predicate_type=PREDICATE_BOOT,
                predicate=report.manifest_dict(),
            )

    def _key_ids(self) -> dict[str, str]:
        ids = {"capability_mac": self._key_id} if self._key_id else {}
        if self._checkpoint_signer is not None:
            ids["checkpoint"] = self._checkpoint_signer.verifier().vkey
        return ids


def _need(value: _T | None, what: str) -> _T:
    if value is None:
        raise SOPError(f"the `{what}` service is not running")
    return value
