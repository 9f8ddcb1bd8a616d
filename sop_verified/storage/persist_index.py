"""The persistence index's records, shared by every backend (no SQL here).

The index is what the persistence controller knows about stored objects:
which ALLOW persist decisions still await their effect (``pending``), every
effect with its outcome, the objects written (name, version, stored path,
digest, size), tombstones, and files still to be purged. It is *derived from
the log*: the backend applies the :class:`IndexOps` of each batch of log
entries in the same transaction as the batch itself, so an effect entry and
its metadata commit together or not at all (docs/adr/0005-persistence.md).
Which entries mean what is decided above storage, by the
:data:`EntryIndexer` the backend is given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sop_verified.errors import PendingClosedError

__all__ = [
    "EffectRecord",
    "EntryIndexer",
    "IndexOps",
    "ObjectRecord",
    "PendingDecision",
    "PurgeRecord",
    "TombstoneRecord",
    "check_closed",
    "number_versions",
]


@dataclass(frozen=True, slots=True)
class PendingDecision:
    """A logged ALLOW persist decision whose effect (or abort) is not logged yet."""

    decision_index: int
    request: bytes
    """The logged request, canonical JSON."""


@dataclass(frozen=True, slots=True)
class EffectRecord:
    """One logged effect entry: ``outcome`` is written, unchanged, refused or aborted."""

    effect_index: int
    decision_index: int | None
    outcome: str
    scope: str
    name: str
    stored: str
    digest: str
    size: int
    time: int

    def row(self) -> tuple[object, ...]:
        """The ``persist_effects`` columns in table order, without the version."""
        return (
            self.effect_index,
            self.decision_index,
            self.outcome,
            self.scope,
            self.name,
            self.stored,
            self.digest,
            self.size,
            self.time,
        )


@dataclass(frozen=True, slots=True)
class TombstoneRecord:
    """A logged tombstone: the object written by ``effect_index`` is deleted by retention."""

    tombstone_index: int
    effect_index: int


@dataclass(frozen=True, slots=True)
class IndexOps:
    """What one batch of log entries changes in the index, in log order per kind."""

    pending: tuple[PendingDecision, ...] = ()
    effects: tuple[EffectRecord, ...] = ()
    tombstones: tuple[TombstoneRecord, ...] = ()
    closes: tuple[int, ...] | None = None
    """Pending rows the effects close; None: every effect's decision (the indexer may leave
    out decisions it never opened because their effect is among the same entries)."""

    def __bool__(self) -> bool:
        """True when there is anything to apply."""
        return bool(self.pending or self.effects or self.tombstones)

    def closed(self) -> list[int]:
        """The decision indexes whose pending rows go."""
        if self.closes is not None:
            return list(self.closes)
        return [e.decision_index for e in self.effects if e.decision_index is not None]


@dataclass(frozen=True, slots=True)
class ObjectRecord:
    """A live object: version ``version`` of ``name`` in ``scope``, at ``stored`` below its root."""

    effect_index: int
    decision_index: int | None
    scope: str
    name: str
    version: int
    stored: str
    digest: str
    size: int
    created_at: int

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> ObjectRecord:
        """The record of a row selected as ``effect_index, decision_index, scope, name,
        version, stored, digest, size, time`` (either backend's driver types)."""
        return cls(
            effect_index=int(row[0]),
            decision_index=None if row[1] is None else int(row[1]),
            scope=str(row[2]),
            name=str(row[3]),
            version=int(row[4]),
            stored=str(row[5]),
            digest=str(row[6]),
            size=int(row[7]),
            created_at=int(row[8]),
        )


@dataclass(frozen=True, slots=True)
class PurgeRecord:
    """A file to remove after its tombstone, unless a live object still uses it."""

    tombstone_index: int
    scope: str
    stored: str


def check_closed(closing: Sequence[int], deleted: int) -> None:
    """Raise unless every pending row a live batch closes was still there to delete.

    Args:
        closing: the decision indexes the batch's effects close.
        deleted: how many pending rows the batch's delete removed.

    Raises:
        PendingClosedError: one of them was closed already, by another writer of
            a shared log (a booting replica's repair): the caller rolls the whole
            batch back, so the decision keeps the one effect entry recorded first.
    """
    if deleted != len(set(closing)):  # spec: INV-9 — at most one effect entry per decision
        wanted = sorted(set(closing))
        raise PendingClosedError(
            f"of the persist decisions this batch closes, at log indexes {wanted[:8]},"
            f" {len(wanted) - deleted} no longer pending: another replica's boot repair"
            " closed it first; the batch was not written"
        )


EntryIndexer = Callable[[Sequence[tuple[int, bytes]]], IndexOps]
"""Given log entries ``(index, payload)`` in order, what they change in the index."""


def number_versions(
    effects: Sequence[EffectRecord], latest: dict[tuple[str, str], int]
) -> list[int | None]:
    """The version each effect gives its object, counting on per name from ``latest``.

    Args:
        effects: One batch's effects, in log order.
        latest: The latest version per ``(scope, name)`` before the batch (at
            least every name a ``written`` effect names that has one); updated
            in place to the latest after it.

    Returns:
        Per effect, the version it wrote, or None for one that wrote nothing.
    """
    out: list[int | None] = []
    for e in effects:
        version = None
        if e.outcome == "written":
            version = latest[(e.scope, e.name)] = latest.get((e.scope, e.name), 0) + 1
        out.append(version)
    return out
