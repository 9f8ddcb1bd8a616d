"""What the persistence controller needs from the outside, as structural protocols.

``storage/`` implements them without importing core: the index is a backend's
``persist`` role (:class:`~sop_verified.storage.ports.PersistIndex`, declared
with the other storage roles and re-exported here), the bytes of a scope are
a :class:`~sop_verified.storage.ports.ScopeContent` the backend opens (files,
:class:`~sop_verified.storage.blobs.ScopeDir`, for SQLite; rows,
:class:`~sop_verified.storage.postgres_content.PostgresScopeContent`, for
PostgreSQL), the log is a backend's ``log`` role
(:class:`~sop_verified.storage.ports.EntryLog`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from sop_verified.storage.ports import PersistIndex, ScopeContent
from sop_verified.tools.tlog import TransparencyLog
from sop_verified.tools.tlog_store import Receipt

__all__ = ["Alarm", "EffectLog", "PersistIndex", "ScopeContent"]

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
