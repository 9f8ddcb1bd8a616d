"""CSP's snapshot book: seals, resumes, revocations and rollbacks, rebuilt from the log.

Lineage (INV-7): every session has an *anchor*, the snapshot a resume must
descend from (or be): the last snapshot resumed, or the target of an
operator-authorised rollback logged after it, or else the session's first
snapshot. So a resume never goes back past the last one resumed unless the
operator said so on the admin plane. The kernel proves this as a
:func:`~sop_verified.core.proofgate.derive.lineage` obligation; the
controller checks it again in plain code. A snapshot is revoked when it or
any of its ancestors is (state derived from revoked state is not trusted).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sop_verified.core.contracts import ensure, invariant, require
from sop_verified.core.proofgate.derive import MAX_LINEAGE, lineage
from sop_verified.core.request import Obligation
from sop_verified.errors import IntegrityError, ProtocolError
from sop_verified.tools.tlog_store import Receipt

__all__ = ["REVOKE_OP", "ROLLBACK_OP", "SealRecord", "SnapshotBook"]

REVOKE_OP = "csp.snapshot.revoke"
ROLLBACK_OP = "csp.rollback.authorize"
_NONE = "(none)"


@dataclass(frozen=True, slots=True)
class SealRecord:
    """A logged seal: the snapshot, its manifest's place and digest, the signed envelope."""

    snapshot: str
    session: str
    parent: str | None
    created: int
    merkle_root: str
    manifest_digest: str
    resource: str
    entries: int
    envelope: dict[str, Any]
    log_index: int
    payload: bytes = field(repr=False)
    receipt: Receipt = field(repr=False)

    @ensure(lambda self, result: result["seal_index"] == self.log_index)
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (with the seal's receipt)."""
        return {
            "snapshot": self.snapshot,
            "session": self.session,
            "parent": self.parent,
            "created": self.created,
            "merkle_root": self.merkle_root,
            "manifest_digest": self.manifest_digest,
            "resource": self.resource,
            "entries": self.entries,
            "seal_index": self.log_index,
            "seal_receipt": self.receipt.to_dict(),
        }

    @ensure(lambda self, result: result["snapshot"]["snapshot"] == self.snapshot)
    def json_fields(self) -> dict[str, Any]:
        """What this seal adds to its ALLOW's JSON form: ``snapshot``."""
        return {"snapshot": self.to_dict()}


def _seal_of(index: int, entry: Mapping[str, Any], payload: bytes, receipt: Receipt) -> SealRecord:
    try:
        parent = entry["parent"]
        envelope = entry["envelope"]
        if not isinstance(envelope, dict) or not (parent is None or isinstance(parent, str)):
            raise TypeError("envelope or parent")
        return SealRecord(
            snapshot=str(entry["snapshot"]),
            session=str(entry["session"]),
            parent=parent,
            created=int(entry["created"]),
            merkle_root=str(entry["merkle_root"]),
            manifest_digest=str(entry["manifest_digest"]),
            resource=str(entry["resource"]),
            entries=int(entry["entries"]),
            envelope=envelope,
            log_index=index,
            payload=payload,
            receipt=receipt,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise IntegrityError(f"a `csp.seal` record is malformed: {exc}") from None


def _field(entry: Mapping[str, Any], name: str) -> str:
    value = entry.get(name)
    if not isinstance(value, str):
        raise IntegrityError(f"a `{entry.get('type')}` record has no `{name}`")
    return value


@invariant(lambda self: set(self._anchor) <= set(self._sessions), "anchors are of known sessions")
class SnapshotBook:
    """Every sealed snapshot, each session's anchor, and the revoked snapshots."""

    def __init__(self) -> None:
        """No snapshot."""
        self._seals: dict[str, SealRecord] = {}
        self._sessions: dict[str, list[str]] = {}
        self._anchor: dict[str, str] = {}
        self._revoked: dict[str, str] = {}

    @ensure(lambda snapshot, result: result is None or result.snapshot == snapshot)
    def seal(self, snapshot: str) -> SealRecord | None:
        """The seal of ``snapshot``, or None."""
        return self._seals.get(snapshot)

    @ensure(lambda self, snapshot, result: not result or snapshot in self._seals)
    def is_revoked(self, snapshot: str) -> bool:
        """Whether ``snapshot`` itself was revoked (its descendants are refused too)."""
        return snapshot in self._revoked

    @ensure(lambda self, session, result: all(self._seals[s].session == session for s in result))
    def snapshots(self, session: str) -> list[str]:
        """The snapshots of ``session`` in the order they were sealed."""
        return list(self._sessions.get(session, ()))

    @ensure(lambda self, result: result is None or result in self._seals)
    def anchor(self, session: str) -> str | None:
        """The snapshot a resume of ``session`` must descend from (None: unknown session)."""
        sealed = self._sessions.get(session)
        if not sealed:
            return None
        return self._anchor.get(session, sealed[0])

    @ensure(lambda result: len(result) <= MAX_LINEAGE)
    def chain(self, snapshot: str, stop: str | None) -> dict[str, str | None]:
        """Parent links from ``snapshot`` up to ``stop`` (or a root), at most MAX_LINEAGE."""
        links: dict[str, str | None] = {}
        current = snapshot
        while current != stop and current in self._seals and len(links) < MAX_LINEAGE:
            parent = self._seals[current].parent
            links[current] = parent
            if parent is None:
                break
            current = parent
        return links

    @ensure(lambda result: result.id.startswith("lineage:"))
    def lineage_obligation(self, session: str, snapshot: str) -> Obligation:
        """The gate's obligation: ``snapshot``'s parent chain reaches the session's anchor."""
        anchor = self.anchor(session)
        seal = self._seals.get(snapshot)
        if anchor is None or seal is None or seal.session != session:
            return lineage({}, snapshot, _NONE)  # no chain: refuted
        return lineage(self.chain(snapshot, anchor), snapshot, anchor)

    @ensure(lambda self, snapshot: not self.is_revoked(snapshot), "INV-7")
    def check_resume(self, session: str, snapshot: str) -> None:
        """Raise unless ``snapshot`` of ``session`` may be resumed now (INV-7 lineage, revocation).

        Raises:
            ProtocolError: ``unknown_session``, ``unknown_snapshot``, ``revoked`` or ``lineage``.
        """
        anchor = self.anchor(session)
        if anchor is None:
            raise ProtocolError(f"no CSP session `{session}`", code="unknown_session")
        seal = self._seals.get(snapshot)
        if seal is None or seal.session != session:
            raise ProtocolError(
                f"no snapshot `{snapshot}` in session `{session}`", code="unknown_snapshot"
            )
        self._check_not_revoked(snapshot)  # spec: INV-7 — a revoked snapshot never resumes
        links = self.chain(snapshot, anchor)
        if snapshot != anchor and anchor not in links.values():  # spec: INV-7 — no rollback
            raise ProtocolError(
                f"snapshot `{snapshot}` does not descend from `{anchor}`, the last one resumed "
                f"(or authorised) in session `{session}`: that would be a rollback",
                code="lineage",
                accepted="a descendant of the anchor, or an operator-authorised rollback",
            )

    @ensure(
        lambda self, session, parent: parent is None or self._seals[parent].session == session,
        "a parent is a snapshot of the same session",
    )
    def check_parent(self, session: str, parent: str | None) -> None:
        """Raise unless ``parent`` may be the parent of a new snapshot of ``session``.

        Raises:
            ProtocolError: ``parent_required`` (the session has snapshots already) or
                ``unknown_parent`` (not a snapshot of this session).
        """
        sealed = self._sessions.get(session)
        if parent is None and sealed:
            raise ProtocolError(
                f"session `{session}` has snapshots; a new one names its parent",
                code="parent_required",
            )
        if parent is not None and (
            parent not in self._seals or self._seals[parent].session != session
        ):
            raise ProtocolError(
                f"parent `{parent}` is not a snapshot of session `{session}`",
                code="unknown_parent",
            )

    def _check_not_revoked(self, snapshot: str) -> None:
        current: str | None = snapshot
        for _ in range(len(self._seals) + 1):
            if current is None or current not in self._seals:
                return
            if current in self._revoked:
                raise ProtocolError(
                    f"snapshot `{current}` is revoked ({self._revoked[current]})"
                    + ("" if current == snapshot else f"; `{snapshot}` descends from it"),
                    code="revoked",
                )
            current = self._seals[current].parent

    @ensure(
        lambda entry: _kind(entry) in ("csp.seal", "csp.resume", REVOKE_OP, ROLLBACK_OP),
        "only a known kind of record fits",
    )
    def check(self, entry: Mapping[str, Any]) -> None:
        """Raise IntegrityError unless the record fits the book now."""
        try:
            _CHECKS[_kind(entry)](self, entry)
        except ProtocolError as exc:
            raise IntegrityError(f"a `{_kind(entry)}` record does not fit: {exc}") from None

    @require(lambda index: index >= 0)
    def apply(self, index: int, entry: Mapping[str, Any], payload: bytes, receipt: Receipt) -> None:
        """Apply one logged record (checked again first)."""
        self.check(entry)
        kind = _kind(entry)
        if kind == "csp.seal":
            seal = _seal_of(index, entry, payload, receipt)
            self._seals[seal.snapshot] = seal
            self._sessions.setdefault(seal.session, []).append(seal.snapshot)
        elif kind == REVOKE_OP:
            self._revoked[_field(entry, "snapshot")] = str(entry.get("reason", "revoked"))
        else:  # a resume or an authorised rollback moves the anchor
            self._anchor[_field(entry, "session")] = _field(entry, "snapshot")


def _kind(entry: Mapping[str, Any]) -> str:
    return str(entry.get("op") if entry.get("type") == "admin" else entry.get("type"))


def _check_seal(book: SnapshotBook, entry: Mapping[str, Any]) -> None:
    seal = _seal_of(0, entry, b"", Receipt(0, b"\0" * 32, 1))
    if book.seal(seal.snapshot) is not None:
        raise ProtocolError(f"snapshot `{seal.snapshot}` is sealed already", code="already_sealed")
    book.check_parent(seal.session, seal.parent)


def _check_resume(book: SnapshotBook, entry: Mapping[str, Any]) -> None:
    book.check_resume(_field(entry, "session"), _field(entry, "snapshot"))


def _check_known(book: SnapshotBook, entry: Mapping[str, Any]) -> None:
    snapshot = _field(entry, "snapshot")
    seal = book.seal(snapshot)
    if seal is None:
        raise ProtocolError(f"no snapshot `{snapshot}`", code="unknown_snapshot")
    if _kind(entry) == ROLLBACK_OP and seal.session != _field(entry, "session"):
        raise ProtocolError(
            f"`{snapshot}` is not of session `{entry['session']}`", code="unknown_snapshot"
        )


_CHECKS = {
    "csp.seal": _check_seal,
    "csp.resume": _check_resume,
    REVOKE_OP: _check_known,
    ROLLBACK_OP: _check_known,
}
