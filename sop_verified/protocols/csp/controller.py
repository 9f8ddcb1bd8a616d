"""CSP's controller: eligible state, holding-cell snapshots sealed and logged, resume (INV-7).

Each call is one kernel request; effects follow only a logged ALLOW (INV-9):

- :meth:`CspController.persist_state` (``state.persist``): which state
  classes may be persisted where is the policy's to say (``context.state_class``);
  the controller insists the request carries one;
- :meth:`CspController.seal` (``snapshot.seal``): the manifest names this
  snapshot's place, its parent is a snapshot of the same session, every blob
  it lists is stored (``missing_blob`` otherwise, nothing written); then the
  manifest is stored write-once, signed as an in-toto seal and logged as a
  ``csp.seal`` record (its log index and receipt are the seal's);
- :meth:`CspController.resume` (``snapshot.resume``, lineage proved by the
  gate): revocation and lineage again, then the manifest and every blob are
  read back through the persistence controller and checked against the seal
  (:mod:`.verify`), the seal's inclusion in the log is verified against a
  signed checkpoint, and only then is the ``csp.resume`` record logged and
  the state handed back.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sop_verified.core.contracts import ensure, invariant, require
from sop_verified.core.persistence import PersistenceController
from sop_verified.core.ports import Clock
from sop_verified.core.request import Decision, Request
from sop_verified.errors import ProtocolError
from sop_verified.protocols.csp.book import SealRecord, SnapshotBook
from sop_verified.protocols.csp.manifest import (
    Manifest,
    blob_resource,
    manifest_resource,
    parse_manifest_resource,
    seal_statement,
)
from sop_verified.protocols.csp.verify import verify_blobs, verify_logged, verify_seal
from sop_verified.protocols.effects import (
    Submit,
    diagnose,
    explain,
    failure_reason,
    parse_or_deny,
    refuse,
)
from sop_verified.protocols.ledger import ProtocolLedger
from sop_verified.tools.canonical import sha256_hex
from sop_verified.tools.signed_note import Verifier
from sop_verified.tools.tlog_receipt import ProofBundle
from sop_verified.tools.tlog_store import Receipt

__all__ = ["CLOCK_SKEW", "CspController", "LogAccess", "ResumeResult", "Resumed", "SealSigner"]


@dataclass(frozen=True, slots=True)
class Resumed:
    """What a resume's ALLOW records: the snapshot's seal and the resume record's receipt."""

    seal: SealRecord | None
    receipt: Receipt

    @ensure(
        lambda self, result: result["snapshot"]["resume_receipt"]["index"] == self.receipt.index
    )
    def json_fields(self) -> dict[str, Any]:
        """What this adds to its ALLOW's JSON form: ``snapshot`` (the seal, ``resume_receipt``)."""
        seal = self.seal.to_dict() if self.seal is not None else {}
        return {"snapshot": {**seal, "resume_receipt": self.receipt.to_dict()}}


CLOCK_SKEW = 300
"""How far in SOP's future a manifest's ``created`` may be (seconds)."""

SealSigner = Callable[[dict[str, Any]], dict[str, Any]]
"""Sign an in-toto statement into a DSSE envelope with SOP's attestation key."""


@dataclass(frozen=True, slots=True)
class ResumeResult:
    """A resume's decision and, when allowed, the verified state and its manifest."""

    decision: Decision
    state: Mapping[str, bytes] | None = None
    manifest: Manifest | None = None

    @property
    def allowed(self) -> bool:
        """True only when every INV-7 check passed and the resume is logged."""
        return self.decision.allowed and self.state is not None


@dataclass(frozen=True, slots=True)
class LogAccess:
    """What a resume needs of the log: proofs, the checkpoint keys, the origin."""

    prove: Callable[[int], ProofBundle]
    keys: Callable[[], Sequence[Verifier]]
    origin: str


@invariant(lambda self: self._book is not None and self._ledger is not None)
class CspController:
    """Carries out CSP's gated operations."""

    def __init__(
        self,
        *,
        book: SnapshotBook,
        ledger: ProtocolLedger,
        submit: Submit,
        persistence: PersistenceController,
        sign: SealSigner,
        seal_key: Ed25519PublicKey,
        log: LogAccess,
        now: Clock,
    ) -> None:
        """Wire the controller to the book, the ledger, the kernel, persistence, keys and log."""
        self._book = book
        self._ledger = ledger
        self._submit = submit
        self._persistence = persistence
        self._sign = sign
        self._seal_key = seal_key
        self._logs = log
        self._now = now
        self._lock = threading.RLock()

    @property
    def book(self) -> SnapshotBook:
        """CSP's snapshot book (read-only use)."""
        return self._book

    @ensure(lambda result: not result.allowed or result.write is not None)
    def persist_state(self, raw: Request | dict[str, Any], data: bytes) -> Decision:
        """Decide a ``state.persist`` (eligibility is the policy's, by ``context.state_class``)."""
        request = parse_or_deny(self._submit, raw)
        if isinstance(request, Decision):
            return request
        decision = self._submit(request)
        if not decision.allowed:
            return decision
        if request.action != "state.persist" or "state_class" not in request.context:
            why = ProtocolError(
                "CSP state is persisted by `state.persist` with its `context.state_class`",
                code="no_state_class",
            )
            return refuse(
                self._ledger, "csp", decision, request, failure_reason(why, ""), now=self._now()
            )
        return self._persistence.execute(decision, request, data)

    @ensure(lambda session, result: result.session == session)
    def manifest(self, session: str, entries: Mapping[str, str], parent: str | None) -> Manifest:
        """A manifest of ``entries`` (key to blob digest), created now by SOP's clock.

        Raises:
            ProtocolError: ``bad_manifest``.
        """
        return Manifest.build(session=session, parent=parent, created=self._now(), entries=entries)

    @ensure(lambda result: not result.allowed or isinstance(result.record, SealRecord))
    def seal(self, raw: Request | dict[str, Any], manifest: Manifest) -> Decision:
        """Decide a ``snapshot.seal`` of ``manifest``; on ALLOW store, sign and log the seal.

        Returns:
            The kernel's DENY, a refusal (``missing_blob``, ``unknown_parent``,
            ``parent_required``, ``already_sealed``, ``resource_mismatch``, ...), or
            the ALLOW with its :class:`SealRecord` ``record`` (the seal, its index and receipt).
        """
        request = parse_or_deny(self._submit, raw)
        if isinstance(request, Decision):
            return request
        with self._lock:
            return self._seal(request, manifest)

    @require(lambda raw: raw is not None)
    @ensure(lambda result: result.state is None or result.decision.allowed)
    def resume(self, raw: Request | dict[str, Any]) -> ResumeResult:
        """Decide a ``snapshot.resume``; on ALLOW verify everything INV-7 names, then log it.

        Returns:
            The result: the state (key to bytes) only when the signature, every
            blob, the log inclusion, revocation and lineage all verified and the
            resume is logged; otherwise a DENY naming the first check that failed.
        """
        request = parse_or_deny(self._submit, raw)
        if isinstance(request, Decision):
            return ResumeResult(request)
        with self._lock:
            return self._resume(request)

    def _check_seal(self, request: Request, manifest: Manifest) -> None:
        snapshot = manifest.snapshot_id()
        expected = manifest_resource(manifest.session, snapshot)
        if request.action != "snapshot.seal" or request.resource != expected:
            raise ProtocolError(
                f"`{request.action}` of `{request.resource}` does not seal this manifest",
                code="resource_mismatch",
                accepted=f"`snapshot.seal` of `{expected}`",
            )
        _check_context(request, manifest.session)
        if self._book.seal(snapshot) is not None:
            raise ProtocolError(f"snapshot `{snapshot}` is sealed already", code="already_sealed")
        self._book.check_parent(manifest.session, manifest.parent)
        parent = self._book.seal(manifest.parent) if manifest.parent else None
        now = self._now()
        if manifest.created > now + CLOCK_SKEW or (parent and manifest.created < parent.created):
            raise ProtocolError(
                f"manifest `created` = {manifest.created} is not plausible",
                code="bad_manifest",
                accepted=f"between the parent's creation and {now + CLOCK_SKEW}",
            )
        for entry in manifest.entries:  # a manifest never references a blob that is not stored
            if not self._blob_stored(entry.digest):
                raise ProtocolError(
                    f"the blob `{entry.digest}` of key `{entry.key}` is not stored",
                    code="missing_blob",
                    accepted=f"blobs stored first at `{blob_resource(entry.digest)}`",
                )

    def _blob_stored(self, digest: str) -> bool:
        located = self._persistence.scopes.locate(blob_resource(digest))
        if located is None:
            return False
        scope, rel = located
        record = self._persistence.lookup(scope.name, rel)
        return record is not None and record.digest == digest

    def _seal(self, request: Request, manifest: Manifest) -> Decision:
        decision = self._submit(request)
        if not decision.allowed:
            return decision
        try:
            self._check_seal(request, manifest)
        except Exception as exc:  # spec: INV-2 — refused before anything is written
            return refuse(
                self._ledger,
                "csp",
                decision,
                request,
                failure_reason(exc, "sealing"),
                now=self._now(),
            )
        written = self._persistence.execute(decision, request, manifest.to_bytes())  # spec: INV-9
        if not written.allowed:
            return written
        try:
            seal = self._log_seal(written, request, manifest)
        except Exception as exc:  # spec: INV-2 — stored but not sealed: say so, DENY
            return self._ledger.refuse("csp", written, request, [failure_reason(exc, "sealing")])
        return dataclasses.replace(written, record=seal)

    def _log_seal(self, written: Decision, request: Request, manifest: Manifest) -> SealRecord:
        snapshot = manifest.snapshot_id()
        if written.write is None:  # the persistence controller's ALLOW always says what it wrote
            raise ProtocolError("the write of the manifest is not reported", code="effect_failed")
        envelope = self._sign(seal_statement(manifest, request.resource))
        entry = {
            "type": "csp.seal",
            "snapshot": snapshot,
            "session": manifest.session,
            "parent": manifest.parent,
            "created": manifest.created,
            "merkle_root": manifest.merkle_root(),
            "manifest_digest": "sha256:" + sha256_hex(manifest.to_bytes()),
            "resource": request.resource,
            "entries": len(manifest.entries),
            "envelope": envelope,
            "decision_index": written.log_index,
            "effect_index": written.write.index,
            "request_id": request.request_id,
            "time": self._now(),
        }
        self._ledger.record(entry)  # spec: INV-9 — the seal is logged; its receipt is recorded
        seal = self._book.seal(snapshot)
        if seal is None:
            raise ProtocolError(f"the seal of `{snapshot}` was not applied", code="effect_failed")
        return seal

    def _resume(self, request: Request) -> ResumeResult:
        target = (
            parse_manifest_resource(request.resource)
            if request.action == "snapshot.resume"
            else None
        )
        book = self._book
        why = None if target is None else diagnose(lambda: book.check_resume(*target))
        decision = self._submit(request)
        if not decision.allowed:
            return ResumeResult(explain(self._ledger, "csp", decision, request, why))
        try:
            if target is None:
                raise ProtocolError(
                    f"`{request.resource}` names no snapshot", code="not_a_snapshot"
                )
            manifest, state = self._verified(decision, request, target)
            entry = {
                "type": "csp.resume",
                "session": target[0],
                "snapshot": target[1],
                "decision_index": decision.log_index,
                "request_id": request.request_id,
                "time": self._now(),
            }
            # logged before the state is handed back
            receipt = self._ledger.record(entry)  # spec: INV-9
        except Exception as exc:  # spec: INV-2, INV-7 — any failed check: DENY, nothing resumed
            why_not = failure_reason(exc, "the resume")
            return ResumeResult(
                refuse(self._ledger, "csp", decision, request, why_not, now=self._now())
            )
        seal = book.seal(target[1])
        return ResumeResult(
            dataclasses.replace(decision, record=Resumed(seal, receipt)), state, manifest
        )

    def _verified(
        self, decision: Decision, request: Request, target: tuple[str, str]
    ) -> tuple[Manifest, dict[str, bytes]]:
        session, snapshot = target
        _check_context(request, session)
        self._book.check_resume(session, snapshot)  # spec: INV-7 — revocation and lineage, again
        seal = self._book.seal(snapshot)
        if seal is None:  # check_resume already refused this; kept for the type checker
            raise ProtocolError(f"no snapshot `{snapshot}`", code="unknown_snapshot")
        raw = self._read(decision, request, seal.resource, "manifest")
        manifest = verify_seal(seal, raw, self._seal_key)  # spec: INV-7 — the signature
        blobs = {
            e.digest: self._read(decision, request, blob_resource(e.digest), "blob")
            for e in manifest.entries
        }
        state = verify_blobs(manifest, blobs)  # spec: INV-7 — every blob's digest
        proof = self._logs.prove(seal.log_index)
        keys, origin = self._logs.keys(), self._logs.origin
        verify_logged(seal, proof, keys, origin)  # spec: INV-7 — log inclusion
        return manifest, state

    def _read(self, decision: Decision, request: Request, resource: str, what: str) -> bytes:
        result = self._persistence.read(decision, request, resource=resource)
        if result.allowed and result.data is not None:
            return result.data
        first = result.decision.reasons[0] if result.decision.reasons else None
        code = first.code if first else "unreadable"
        raise ProtocolError(
            f"the {what} `{resource}` could not be read back: {first.message if first else code}",
            code=_READ_CODES.get((what, code), f"{what}_unreadable"),
        )


def _check_context(request: Request, session: str) -> None:
    got = request.context.get("session")
    if got is not None and got != session:
        raise ProtocolError(
            f"`context.session` is `{got}`, the resource says `{session}`", code="context_mismatch"
        )


_READ_CODES = {
    ("manifest", "not_found"): "missing_manifest",
    ("manifest", "integrity"): "manifest_digest",
    ("blob", "not_found"): "missing_blob",
    ("blob", "integrity"): "blob_digest",
}
