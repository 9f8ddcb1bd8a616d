"""The persistence index and small blobs in memory: the reference the SQLite index must match.

:class:`IndexState` holds the rows; :func:`apply_unit` applies a unit of work
to a copy the caller swaps in once the whole batch succeeded (so a failed
append applies nothing). The rules are the SQLite ones (storage/sqlite_persist.py,
storage/sqlite_blobs.py): pending rows are inserted once and closed by their
effect; effects and tombstones are insert-only; versions count per
``(scope, name)``; a blob is kept once per ``(scope, stored)`` under the
first written effect that stored it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sop_verified.storage.persist_index import (
    EffectRecord,
    EntryIndexer,
    IndexOps,
    ObjectRecord,
    PendingDecision,
    PurgeRecord,
    check_closed,
    number_versions,
)
from sop_verified.storage.unit_of_work import KeptBlob, UnitOfWork

__all__ = ["IndexState", "MemoryBlobs", "MemoryPersistIndex", "apply_ops", "apply_unit"]


@dataclass
class IndexState:
    """Every row of the index and the small blobs (mutable; copied before each batch)."""

    indexed_to: int = 0
    pending: dict[int, bytes] = field(default_factory=dict)
    effects: dict[int, tuple[EffectRecord, int | None]] = field(default_factory=dict)
    tombstones: dict[int, int] = field(default_factory=dict)
    """Effect index to tombstone index."""
    purge: dict[int, tuple[str, str]] = field(default_factory=dict)
    latest: dict[tuple[str, str], int] = field(default_factory=dict)
    inline: dict[int, bytes] = field(default_factory=dict)

    def copy(self) -> IndexState:
        """A copy to change (records are frozen, only the containers are copied)."""
        return IndexState(
            self.indexed_to,
            dict(self.pending),
            dict(self.effects),
            dict(self.tombstones),
            dict(self.purge),
            dict(self.latest),
            dict(self.inline),
        )

    def written(self, scope: str, stored: str) -> list[int]:
        """Effect indexes of written effects of ``(scope, stored)``, in log order."""
        return sorted(
            i
            for i, (e, _) in self.effects.items()
            if e.outcome == "written" and e.scope == scope and e.stored == stored
        )

    def live(self) -> list[ObjectRecord]:
        """Every live object (written, not tombstoned), in log order."""
        return [
            _object(e, v)
            for i, (e, v) in sorted(self.effects.items())
            if e.outcome == "written" and v is not None and i not in self.tombstones
        ]


def _object(e: EffectRecord, version: int) -> ObjectRecord:
    return ObjectRecord(
        effect_index=e.effect_index,
        decision_index=e.decision_index,
        scope=e.scope,
        name=e.name,
        version=version,
        stored=e.stored,
        digest=e.digest,
        size=e.size,
        created_at=e.time,
    )


def apply_ops(state: IndexState, ops: IndexOps, *, live: bool = False) -> dict[int, int]:
    """Apply one batch's index changes to ``state``; return the versions given.

    Raises:
        PendingClosedError: ``live`` (a batch written now) and a decision it closes
            is not pending; ``state`` is then unchanged.
    """
    closing = ops.closed()
    if live:
        check_closed(closing, sum(d in state.pending for d in set(closing)))
    for p in ops.pending:
        state.pending.setdefault(p.decision_index, p.request)
    for d in closing:
        state.pending.pop(d, None)
    versions: dict[int, int] = {}
    for e, version in zip(ops.effects, number_versions(ops.effects, state.latest), strict=True):
        if version is not None:
            versions[e.effect_index] = version
        state.effects.setdefault(e.effect_index, (e, version))
    for t in ops.tombstones:
        held = state.effects.get(t.effect_index)
        if held is None or held[0].outcome != "written":
            continue  # nothing was written there: nothing to delete
        if t.effect_index not in state.tombstones and t.tombstone_index not in set(
            state.tombstones.values()
        ):
            state.tombstones[t.effect_index] = t.tombstone_index
        state.purge.setdefault(t.tombstone_index, (held[0].scope, held[0].stored))
    return versions


def _store_blob(state: IndexState, blob: KeptBlob) -> None:
    holders = state.written(blob.scope, blob.stored)
    for i in holders:  # an equal blob under another effect: repair a tampered copy only
        if i != blob.effect_index and i in state.inline and state.inline[i] != blob.data:
            state.inline[i] = blob.data
    if not any(i in state.inline for i in holders):
        state.inline[blob.effect_index] = blob.data


def apply_unit(state: IndexState, unit: UnitOfWork) -> dict[int, int]:
    """Apply a unit of work to ``state``; return the versions given to written effects."""
    versions = apply_ops(state, unit.index, live=True) if unit.index else {}
    state.indexed_to = unit.indexed_to
    for blob in unit.blobs:
        _store_blob(state, blob)
    return versions


def catch_up(
    state: IndexState, indexer: EntryIndexer, entries: Sequence[tuple[int, bytes]]
) -> None:
    """Index ``entries`` (the stored entries from ``state.indexed_to`` on) into ``state``."""
    if entries:
        ops = indexer(entries)
        if ops:
            apply_ops(state, ops)
        state.indexed_to = entries[-1][0] + 1


class MemoryBlobs:
    """The small blobs of a :class:`MemoryPersistIndex` (a ``BlobStore``)."""

    def __init__(self, lock: threading.Lock, state: Callable[[], IndexState]) -> None:
        """Read the backend's current index state under its lock."""
        self._lock = lock
        self._state = state

    def blob(self, scope: str, stored: str) -> bytes | None:
        """The bytes kept for ``stored`` in ``scope``, or None."""
        with self._lock:
            state = self._state()
            for i in state.written(scope, stored):
                if i in state.inline:
                    return state.inline[i]
            return None

    def drop_blob(self, scope: str, stored: str) -> bool:
        """Delete the copy of ``stored`` unless a live object uses it; True when one was deleted."""
        with self._lock:
            state = self._state()
            holders = state.written(scope, stored)
            if any(i not in state.tombstones for i in holders):
                return False
            dropped = [i for i in holders if state.inline.pop(i, None) is not None]
            return bool(dropped)


class MemoryPersistIndex:
    """The persistence index in memory (a ``PersistIndex``)."""

    def __init__(
        self, lock: threading.Lock, state: Callable[[], IndexState], blobs: MemoryBlobs
    ) -> None:
        """Read the backend's current index state under its lock."""
        self._lock = lock
        self._state = state
        self._blobs = blobs

    def blob(self, scope: str, stored: str) -> bytes | None:
        """The bytes kept for ``stored`` in ``scope``, or None."""
        return self._blobs.blob(scope, stored)

    def drop_blob(self, scope: str, stored: str) -> bool:
        """Delete the copy of ``stored`` unless a live object uses it."""
        return self._blobs.drop_blob(scope, stored)

    def indexed_to(self) -> int:
        """The log size the index reflects."""
        with self._lock:
            return self._state().indexed_to

    def pending(self) -> list[PendingDecision]:
        """Every ALLOW persist decision still awaiting its effect, in log order."""
        with self._lock:
            return [PendingDecision(i, r) for i, r in sorted(self._state().pending.items())]

    def repairable(self) -> list[PendingDecision]:
        """Every pending decision: this store has one writer, so boot repair closes them all."""
        return self.pending()

    def pending_decision(self, decision_index: int) -> PendingDecision | None:
        """The pending decision at ``decision_index``, or None."""
        with self._lock:
            request = self._state().pending.get(decision_index)
        return None if request is None else PendingDecision(decision_index, request)

    def _live(self) -> list[ObjectRecord]:
        with self._lock:
            return self._state().live()

    def latest(self, scope: str, name: str) -> ObjectRecord | None:
        """The newest live object named ``name`` in ``scope``."""
        found = [o for o in self._live() if o.scope == scope and o.name == name]
        return found[-1] if found else None

    def version(self, scope: str, name: str, version: int) -> ObjectRecord | None:
        """Live version ``version`` of ``name`` in ``scope``."""
        found = [
            o for o in self._live() if o.scope == scope and o.name == name and o.version == version
        ]
        return found[0] if found else None

    def by_stored(self, scope: str, stored: str) -> ObjectRecord | None:
        """A live object stored at ``stored`` in ``scope`` (the first in log order)."""
        found = [o for o in self._live() if o.scope == scope and o.stored == stored]
        return found[0] if found else None

    def object_at(self, effect_index: int) -> ObjectRecord | None:
        """The live object written by the effect entry ``effect_index``."""
        found = [o for o in self._live() if o.effect_index == effect_index]
        return found[0] if found else None

    def written_version(self, effect_index: int) -> int | None:
        """The version the effect entry ``effect_index`` wrote, if it wrote a live object."""
        record = self.object_at(effect_index)
        return None if record is None else record.version

    def objects(self, scope: str, name: str | None = None) -> list[ObjectRecord]:
        """Live objects of ``scope`` (of one name if given), by name, newest first."""
        found = [o for o in self._live() if o.scope == scope and name in (None, o.name)]
        return sorted(found, key=lambda o: (o.name, -o.effect_index))

    def purges(self) -> list[PurgeRecord]:
        """Files whose tombstones are logged and that are not removed yet."""
        with self._lock:
            rows = sorted(self._state().purge.items())
        return [PurgeRecord(i, scope, stored) for i, (scope, stored) in rows]

    def purged(self, tombstone_index: int) -> None:
        """Drop ``tombstone_index`` from the purge queue."""
        with self._lock:
            self._state().purge.pop(tombstone_index, None)
