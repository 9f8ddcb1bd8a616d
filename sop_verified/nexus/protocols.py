"""The protocol services: DRAC, EMP and CSP wired at boot, their state replayed from the log.

At boot (after the log and the persistence controller) the record index is
opened in the log's database, brought up to date with the log
(:meth:`~sop_verified.protocols.ledger.ProtocolLedger.catch_up`), and every
protocol record is applied again in log order, so the protocols' state is
exactly what the log says. A malformed or contradictory record fails the boot
(SOP stays not READY, INV-8). The admin-plane operations (registering an EMP
key, revoking a snapshot, authorising a rollback) are logged before they
take effect, like every admin action.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sop_verified.core.persistence import PersistenceController
from sop_verified.core.ports import Clock
from sop_verified.core.request import Obligation, Request
from sop_verified.errors import InputError, IntegrityError, ProtocolError
from sop_verified.nexus.config import SOPConfig
from sop_verified.nexus.keys import attestation_key_id
from sop_verified.nexus.log_service import attest
from sop_verified.protocols.csp import (
    REVOKE_OP,
    ROLLBACK_OP,
    CspController,
    LogAccess,
    SnapshotBook,
)
from sop_verified.protocols.drac import DracController, DracState
from sop_verified.protocols.drac.phases import SESSIONS_ROOT
from sop_verified.protocols.effects import Submit
from sop_verified.protocols.emp import EmpController, EmpState, emp_key_id, key_entry
from sop_verified.protocols.emp.state import revoke_entry
from sop_verified.protocols.ledger import RECORD_MARKS, ProtocolLedger, RecordSink
from sop_verified.protocols.obligations import protocol_obligations
from sop_verified.storage.ports import RecordIndex, StorageBackend
from sop_verified.tools.attest import sign_envelope
from sop_verified.tools.tlog import TransparencyLog
from sop_verified.tools.tlog_store import Receipt

__all__ = [
    "ProtocolServices",
    "authorize_rollback",
    "derive",
    "emp_revocation",
    "load_public_key",
    "register_emp_key",
    "revoke_emp_key",
    "revoke_snapshot",
    "self_test",
    "start",
]

_SESSIONS_PREFIX = SESSIONS_ROOT + "/"


@dataclass
class ProtocolServices:
    """The wired protocol controllers and what they share."""

    index: RecordIndex
    ledger: ProtocolLedger
    drac_state: DracState
    emp_state: EmpState
    book: SnapshotBook
    drac: DracController
    emp: EmpController
    csp: CspController
    replayed: int

    def close(self) -> None:
        """Raise the record index's mark to the log's end on a clean stop (the next boot's
        catch-up then starts there, not at the last record: a million decisions later it
        would otherwise read a million entries). The storage backend closes the index."""
        self.ledger.followed_to(self.ledger.log_size())


def _sinks(drac: DracState, emp: EmpState, book: SnapshotBook) -> dict[str, RecordSink]:
    return {
        "drac.phase": drac,
        "drac.artifact": drac,
        "emp.output": emp,
        "emp.key.register": emp,
        "emp.key.revoke": emp,
        "csp.seal": book,
        "csp.resume": book,
        REVOKE_OP: book,
        ROLLBACK_OP: book,
    }


def start(
    *,
    config: SOPConfig,
    store: StorageBackend,
    log: TransparencyLog,
    persistence: PersistenceController,
    key: Ed25519PrivateKey,
    submit: Submit,
    now: Clock,
) -> ProtocolServices:
    """Open the record index, replay the protocol records, wire the controllers.

    Raises:
        IntegrityError: a record is malformed or contradicts the ones before it.
        StorageError: the index or the log failed.
    """
    index = store.records
    drac_state, emp_state, book = DracState(config.drac.phases), EmpState(), SnapshotBook()
    ledger = ProtocolLedger(
        log=store.log, index=index, sinks=_sinks(drac_state, emp_state, book), now=now
    )

    def candidates(start: int, end: int) -> list[tuple[int, bytes, bytes]]:
        # the store scans for the record marks (in C for SQLite): a boot after a million
        # decisions reads only the entries that can be records, not every payload
        return store.log.log_entries_containing(start, end, RECORD_MARKS)

    ledger.catch_up(candidates, log.size, log.checkpoint_note)
    replayed = ledger.replay()
    attest_fn = _attester(log, key)
    common: dict[str, Any] = {"ledger": ledger, "submit": submit, "persistence": persistence}
    return ProtocolServices(
        index=index,
        ledger=ledger,
        drac_state=drac_state,
        emp_state=emp_state,
        book=book,
        drac=DracController(state=drac_state, attest=attest_fn, now=now, **common),
        emp=EmpController(state=emp_state, attest=attest_fn, now=now, **common),
        csp=CspController(
            book=book,
            sign=lambda body: sign_envelope(body, key, attestation_key_id(key)),
            seal_key=key.public_key(),
            log=LogAccess(prove=log.prove, keys=lambda: log.verifiers, origin=log.origin),
            now=now,
            **common,
        ),
        replayed=replayed,
    )


def _attester(
    log: TransparencyLog, key: Ed25519PrivateKey
) -> Callable[[str, list[tuple[str, str]], str, dict[str, Any]], Receipt]:
    def run(
        kind: str, subjects: list[tuple[str, str]], predicate_type: str, predicate: dict[str, Any]
    ) -> Receipt:
        return attest(
            log, key, kind, subjects=subjects, predicate_type=predicate_type, predicate=predicate
        )

    return run


def self_test(services: ProtocolServices) -> None:
    """The ledger is in step with the log and a bad DRAC step is refused.

    Raises:
        IntegrityError: a check failed.
    """
    if services.ledger.stale:
        raise IntegrityError("the protocol ledger is stale")
    canary = Request(
        request_id="boot-canary",
        principal="sop-canary",
        action="phase.advance",
        resource="artifacts/drac/sessions/boot-canary/phases/NONE/complete",
    )
    obligations = protocol_obligations(canary, services.drac_state, services.book)
    if len(obligations) != 1 or not obligations[0].id.startswith("phase:"):
        raise IntegrityError("DRAC derived no phase-order obligation for a step")


def derive(services: ProtocolServices | None, request: Request) -> list[Obligation]:
    """The DRAC and CSP obligations of ``request`` (:mod:`sop_verified.protocols.obligations`).

    Raises:
        RuntimeError: the request needs protocol state and the protocols are not booted.
    """
    action = request.action
    if action != "snapshot.resume" and not (
        action in ("phase.advance", "artifact.persist")
        and request.resource.startswith(_SESSIONS_PREFIX)
    ):
        return []  # the hot path: most requests carry no protocol obligation
    drac = None if services is None else services.drac_state
    book = None if services is None else services.book
    return protocol_obligations(request, drac, book)


def load_public_key(public_key: Ed25519PublicKey | bytes | str) -> Ed25519PublicKey:
    """An Ed25519 public key from a key object, 32 raw bytes, or PEM or base64 text.

    Raises:
        InputError: not an Ed25519 public key.
    """
    if isinstance(public_key, Ed25519PublicKey):
        return public_key
    try:
        if isinstance(public_key, str) and "BEGIN PUBLIC KEY" in public_key:
            loaded = serialization.load_pem_public_key(public_key.encode())
            if isinstance(loaded, Ed25519PublicKey):
                return loaded
            raise ValueError("not Ed25519")
        raw = (
            public_key
            if isinstance(public_key, bytes)
            else base64.b64decode(public_key, validate=True)
        )
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, binascii.Error, TypeError) as exc:
        raise InputError(
            f"not an Ed25519 public key: {exc}",
            accepted="an Ed25519 key, 32 raw bytes, base64 of them, or SubjectPublicKeyInfo PEM",
        ) from None


def register_emp_key(services: ProtocolServices, public_key: Ed25519PublicKey, now: int) -> str:
    """Register EMP's signing key (admin plane): logged, then in force. Idempotent."""
    key_id = emp_key_id(public_key)
    if key_id not in services.emp_state.key_ids():
        services.ledger.record(key_entry(public_key, time=now))  # spec: INV-9
    return key_id


def revoke_emp_key(
    services: ProtocolServices, key_id: str, reason: str, now: int
) -> Receipt | None:
    """Revoke an EMP signing key (admin plane): logged, then no new output of it is recorded.

    Returns:
        The revocation's receipt, or None when it was revoked already.

    Raises:
        ProtocolError: ``unknown_key`` (not registered).
    """
    state = services.emp_state
    if key_id not in state.key_ids():
        raise ProtocolError(
            f"EMP key `{key_id[:16]}` is not registered",
            code="unknown_key",
            accepted=f"one of the registered key ids: {', '.join(state.key_ids()) or 'none'}",
        )
    if state.revoked_at(key_id) is not None:
        return None
    entry = revoke_entry(key_id, reason=reason, time=now)
    return services.ledger.record(entry)  # spec: INV-9 — logged before it takes effect


def emp_revocation(key_id: str, receipt: Receipt | None) -> dict[str, Any]:
    """A revocation's outcome as ``sop emp revoke-key --json`` prints it (and the admin plane)."""
    return {
        "key_id": key_id,
        "revoked": receipt is not None,
        "log_index": None if receipt is None else receipt.index,
        "detail": "revoked" if receipt is not None else "already revoked: nothing logged",
    }


def revoke_snapshot(
    services: ProtocolServices, snapshot: str, reason: str, now: int
) -> Receipt | None:
    """Revoke a snapshot (admin plane): logged, then no resume of it or its descendants.

    Returns:
        The revocation's receipt, or None when it was revoked already.

    Raises:
        ProtocolError: ``unknown_snapshot``.
    """
    if services.book.seal(snapshot) is None:
        raise ProtocolError(f"no snapshot `{snapshot}`", code="unknown_snapshot")
    if services.book.is_revoked(snapshot):
        return None
    entry = {"type": "admin", "op": REVOKE_OP, "snapshot": snapshot, "reason": reason, "time": now}
    return services.ledger.record(entry)  # spec: INV-9 — logged before it takes effect


def authorize_rollback(
    services: ProtocolServices, session: str, snapshot: str, now: int
) -> Receipt:
    """Authorise resuming ``snapshot`` of ``session`` although it is older (admin plane): logged.

    Raises:
        ProtocolError: ``unknown_snapshot``.
    """
    seal = services.book.seal(snapshot)
    if seal is None or seal.session != session:
        raise ProtocolError(
            f"no snapshot `{snapshot}` in session `{session}`", code="unknown_snapshot"
        )
    entry = {
        "type": "admin",
        "op": ROLLBACK_OP,
        "session": session,
        "snapshot": snapshot,
        "time": now,
    }
    return services.ledger.record(entry)  # spec: INV-9 — the rollback is on the record first
