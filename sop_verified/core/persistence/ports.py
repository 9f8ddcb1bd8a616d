"""What the persistence controller needs from the outside, as structural protocols.

``storage/`` implements them without importing core: the index is a backend's
``persist`` role (:class:`~sop_verified.storage.ports.PersistIndex`, declared
with the other storage roles and re-exported here), the files of a scope are a
:class:`~sop_verified.storage.blobs.ScopeDir`, the log is a backend's ``log``
role (:class:`~sop_verified.storage.ports.EntryLog`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from sop_verified.storage.ports import PersistIndex
from sop_verified.tools.tlog import TransparencyLog
from sop_verified.tools.tlog_store import Receipt

__all__ = ["Alarm", "EffectLog", "PersistIndex", "ScopeFiles"]

Alarm = Callable[[str], None]
"""Raises the integrity alarm with its reason (nexus: the service, so SOP, becomes DEGRADED)."""


class EffectLog(Protocol):
    """The tamper-evident log as the controller uses it."""

    def append_receipt(self, payload: bytes) -> Receipt:
        """Durably append one entry; return its receipt (raise StorageError on failure)."""

    def log_entries(self, start: int = 0, end: int | None = None) -> list[tuple[int, bytes, bytes]]:
        """Entries ``[start, end)`` as (index, leaf hash, payload)."""

    @property
    def opened(self) -> TransparencyLog:
        """The opened log: its signed checkpoint, entries and inclusion proofs."""


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
