"""What the persistence controller needs from the outside, as structural protocols.

``storage/`` implements them without importing core: the index is
:class:`~sop_verified.storage.sqlite_persist.SQLitePersistIndex`, the files of
a scope are a :class:`~sop_verified.storage.blobs.ScopeDir`, the log is the
:class:`~sop_verified.storage.sqlite.SQLiteStore`.
"""

from __future__ import annotations

from typing import Protocol

from sop_verified.storage.persist_index import ObjectRecord, PendingDecision, PurgeRecord
from sop_verified.tools.tlog_store import Receipt

__all__ = ["EffectLog", "PersistIndex", "ScopeFiles"]


class PersistIndex(Protocol):
    """The persistence index, derived from the log (see ``storage/persist_index.py``)."""

    def pending(self) -> list[PendingDecision]:
        """Every ALLOW persist decision whose effect is not logged, in log order."""

    def pending_decision(self, decision_index: int) -> PendingDecision | None:
        """The pending decision at ``decision_index``, or None."""

    def latest(self, scope: str, name: str) -> ObjectRecord | None:
        """The newest live object named ``name`` in ``scope``."""

    def version(self, scope: str, name: str, version: int) -> ObjectRecord | None:
        """Live version ``version`` of ``name`` in ``scope``."""

    def by_stored(self, scope: str, stored: str) -> ObjectRecord | None:
        """A live object stored at ``stored`` in ``scope``."""

    def object_at(self, effect_index: int) -> ObjectRecord | None:
        """The live object written by the effect entry ``effect_index``."""

    def written_version(self, effect_index: int) -> int | None:
        """The version the effect entry ``effect_index`` wrote (None: no live object)."""

    def blob(self, scope: str, stored: str) -> bytes | None:
        """The bytes the database keeps for ``stored`` in ``scope`` (small blobs), or None."""

    def drop_blob(self, scope: str, stored: str) -> bool:
        """Delete the database copy of ``stored`` unless a live object uses it."""

    def objects(self, scope: str, name: str | None = None) -> list[ObjectRecord]:
        """Live objects of ``scope`` (one name if given), by name, newest first."""

    def purges(self) -> list[PurgeRecord]:
        """Files whose tombstones are logged and that are not removed yet."""

    def purged(self, tombstone_index: int) -> None:
        """Drop ``tombstone_index`` from the purge queue."""


class EffectLog(Protocol):
    """The tamper-evident log as the controller uses it."""

    def append_receipt(self, payload: bytes) -> Receipt:
        """Durably append one entry; return its receipt (raise StorageError on failure)."""

    def log_entries(self, start: int = 0, end: int | None = None) -> list[tuple[int, bytes, bytes]]:
        """Entries ``[start, end)`` as (index, leaf hash, payload)."""


class ScopeFiles(Protocol):
    """One scope root's files, resolved component by component with O_NOFOLLOW (INV-4)."""

    def read(self, rel: str, *, max_bytes: int, expected_hex: str) -> bytes:
        """The verified content at ``rel`` (IntegrityError on a digest mismatch)."""

    def digest(self, rel: str, *, max_bytes: int) -> str | None:
        """The SHA-256 hex of the file at ``rel``, or None when absent."""

    def write(self, rel: str, data: bytes, *, tag: str, exclusive: bool) -> None:
        """Durably store ``data`` at ``rel`` (temp, fsync, rename or link, fsync dir)."""

    def unlink(self, rel: str) -> bool:
        """Remove ``rel``; False when it was absent."""

    def sweep_temps(self, rel_dir: str, tag: str | None = None) -> int:
        """Remove leftover temporary files in ``rel_dir``; return how many."""

    def close(self) -> None:
        """Release the root descriptor."""
