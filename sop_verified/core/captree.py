"""The derivation tree of admitted capabilities and its revocations.

Each admitted capability is kept with its stored canonical claims and its
*chain*: itself and all its ancestors. A capability is dead when any member
of its chain is revoked (INV-10), so revoking a parent kills every
descendant, including one whose own revocation was never recorded.
:func:`load_tree` rebuilds the tree from a store and raises
:class:`~sop_verified.errors.IntegrityError` when the stored records
disagree with themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from sop_verified.core.attenuation import check_actions_and_window
from sop_verified.core.capclaims import Capability
from sop_verified.core.contracts import ensure, invariant, require
from sop_verified.core.ports import CapabilityStore
from sop_verified.errors import AttenuationError, CapabilityError, IntegrityError

__all__ = ["CapabilityRecord", "CapabilityTree", "load_tree"]


@dataclass(frozen=True, slots=True)
class CapabilityRecord:
    """An admitted capability, its stored canonical claims and its chain (self and ancestors)."""

    cap: Capability
    claims: bytes
    chain: frozenset[str]


def _unknown(cap_id: str) -> CapabilityError:
    return CapabilityError(f"capability `{cap_id!s:.80}` was never admitted", code="unknown")


@invariant(
    lambda self: len(self.revoked) <= len(self.records) == len(self.children),
    "only admitted capabilities are revoked; every capability has a child list",
)
class CapabilityTree:
    """Admitted capabilities by id, their children, and revocations (id to time).

    The registry reads :attr:`records` and :attr:`revoked` directly on the hot
    path; it changes them only through :meth:`add` and :meth:`mark_revoked`.
    """

    def __init__(self) -> None:
        """Start empty."""
        self.records: dict[str, CapabilityRecord] = {}
        self.children: dict[str, list[str]] = {}
        self.revoked: dict[str, int] = {}

    @require(
        lambda self, cap: (
            cap.id not in self.records and (cap.parent_id is None or cap.parent_id in self.records)
        ),
        "ids are write-once and parents come first",
    )
    @ensure(lambda self, cap, result: self.records[cap.id] is result, "indexed")
    def add(self, cap: Capability, claims: bytes) -> CapabilityRecord:
        """Index an admitted capability whose parent (if any) is already indexed.

        Args:
            cap: the capability.
            claims: its canonical claims bytes as stored.

        Returns:
            The record, with its chain.

        Raises:
            IntegrityError: the id is already indexed or the parent is not.
        """
        if cap.id in self.records:
            raise IntegrityError(f"capability `{cap.id}` is admitted twice")
        chain = {cap.id}
        if cap.parent_id is not None:
            parent = self.records.get(cap.parent_id)
            if parent is None:
                raise IntegrityError(
                    f"capability `{cap.id}` names unknown parent `{cap.parent_id}`"
                )
            chain |= parent.chain
            self.children[cap.parent_id].append(cap.id)
        record = CapabilityRecord(cap, claims, frozenset(chain))
        self.records[cap.id] = record
        self.children[cap.id] = []
        return record

    @ensure(lambda cap_id, result: cap_id not in result, "a capability is not its own descendant")
    def subtree(self, cap_id: str) -> list[str]:
        """Return the descendants of ``cap_id``, breadth-first.

        Args:
            cap_id: an admitted capability id.

        Returns:
            The ids derived from it, transitively (not itself).

        Raises:
            CapabilityError: code ``unknown``: not admitted.
        """
        if cap_id not in self.records:
            raise _unknown(cap_id)
        out: list[str] = []
        frontier = [cap_id]
        while frontier:
            frontier = [c for p in frontier for c in self.children[p]]
            out.extend(frontier)
        return out

    @require(lambda self, ids: all(i in self.records for i in ids), "only admitted ids")
    @ensure(lambda self, ids: all(i in self.revoked for i in ids), "all are revoked")
    def mark_revoked(self, ids: list[str], at: int) -> None:
        """Mark ``ids`` revoked at ``at``; an earlier revocation time is kept.

        Args:
            ids: admitted capability ids.
            at: the revocation time.

        Raises:
            CapabilityError: code ``unknown``: an id is not admitted.
        """
        for i in ids:
            if i not in self.records:
                raise _unknown(i)
        for i in ids:  # spec: INV-10 — every id given, i.e. the whole subtree
            self.revoked.setdefault(i, at)

    @ensure(lambda self, cap_id, result: result or cap_id not in self.revoked, "INV-10")
    def is_dead(self, cap_id: str) -> bool:
        """Whether ``cap_id`` or any ancestor is revoked; ``unknown`` if not admitted.

        Raises:
            CapabilityError: code ``unknown``: not admitted.
        """
        record = self.records.get(cap_id)
        if record is None:
            raise _unknown(cap_id)
        return not self.revoked.keys().isdisjoint(record.chain)  # spec: INV-10


@ensure(lambda result: len(result.revoked) <= len(result.records), "revocations name capabilities")
def load_tree(store: CapabilityStore) -> CapabilityTree:
    """Rebuild the tree from ``store``, checking that it agrees with itself.

    Args:
        store: the capability store.

    Returns:
        The tree with every stored capability and revocation.

    Raises:
        IntegrityError: unreadable claims, an id or parent that disagrees with
            the claims, a duplicate, an unknown parent, a child wider than its
            parent in actions, window or principal, or a revocation of an
            unknown capability.
        StorageError: the store failed.
    """
    tree = CapabilityTree()
    for cap_id, parent_id, claims in store.load_capabilities():
        cap = _stored_capability(cap_id, parent_id, claims)
        if cap.id in tree.records:
            raise IntegrityError(f"capability `{cap.id}` is stored twice")
        if parent_id is not None:
            parent = tree.records.get(parent_id)
            if parent is None:
                raise IntegrityError(f"capability `{cap.id}` names unknown parent `{parent_id}`")
            _check_stored_narrower(parent.cap, cap)
        tree.add(cap, claims)
    for cap_id, at in store.load_revocations().items():
        if cap_id not in tree.records:
            raise IntegrityError(f"revocation names unknown capability `{cap_id!s:.80}`")
        tree.revoked[cap_id] = at
    return tree


def _stored_capability(cap_id: str, parent_id: str | None, claims: bytes) -> Capability:
    try:
        cap = Capability.from_claims(claims)
    except CapabilityError as exc:
        raise IntegrityError(f"stored capability `{cap_id!s:.80}` is unreadable: {exc}") from None
    if cap.id != cap_id or cap.parent_id != parent_id:
        raise IntegrityError(f"stored capability `{cap_id!s:.80}` disagrees with its claims")
    return cap


def _check_stored_narrower(parent: Capability, cap: Capability) -> None:
    """Cheap re-check at load (the resource proof was made at attenuation)."""
    try:
        check_actions_and_window(parent, cap.actions, cap.not_before, cap.expires)
    except AttenuationError as exc:
        raise IntegrityError(
            f"stored capability `{cap.id}` is wider than its parent: {exc}"
        ) from None
    if cap.principal != parent.principal:
        raise IntegrityError(f"stored capability `{cap.id}` changes the parent's principal")
