"""The in-memory capability, policy, verdict and protocol-record roles.

Each keeps the rules of the durable backends: capabilities are write-once
by id, revocations once, policy sets and
verdicts insert-only (a verdict is never replaced), protocol records indexed
once per log index with a high-water mark that never goes down. Writes call
the backend's ``writable`` check first, so a backend made to fail raises
:class:`~sop_verified.errors.StorageError` before changing anything.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from sop_verified.errors import StorageError

__all__ = ["MemoryCapabilities", "MemoryPolicies", "MemoryRecordIndex", "MemoryVerdicts"]

Writable = Callable[[str], None]


class MemoryCapabilities:
    """Admitted capabilities and revocations (a ``CapabilityStore``)."""

    def __init__(self, lock: threading.Lock, writable: Writable) -> None:
        """Share the backend's lock and write check."""
        self._lock = lock
        self._writable = writable
        self._caps: dict[str, tuple[str, str | None, bytes]] = {}
        self._revocations: dict[str, int] = {}

    def save_capability(self, cap_id: str, parent_id: str | None, claims: bytes) -> None:
        """Store an admitted capability (write-once by id).

        Raises:
            StorageError: ``cap_id`` is already stored, or writes are failing.
        """
        with self._lock:
            self._writable(f"capability `{cap_id}`")
            if cap_id in self._caps:
                raise StorageError(f"capability `{cap_id}` is already stored (write-once)")
            self._caps[cap_id] = (cap_id, parent_id, bytes(claims))

    def load_capabilities(self) -> list[tuple[str, str | None, bytes]]:
        """All admitted capabilities in admission order."""
        with self._lock:
            return list(self._caps.values())

    def save_revocation(self, cap_id: str, at: int) -> None:
        """Record a revocation, once (a second record of ``cap_id`` is refused)."""
        with self._lock:
            self._writable(f"revocation of `{cap_id}`")
            if cap_id in self._revocations:
                raise StorageError(f"the revocation of `{cap_id}` is already recorded")
            self._revocations[cap_id] = at

    def load_revocations(self) -> dict[str, int]:
        """All revocations, id to time."""
        with self._lock:
            return dict(self._revocations)


class MemoryPolicies:
    """Activated policy sets (a ``PolicyStore``)."""

    def __init__(self, lock: threading.Lock, writable: Writable) -> None:
        """Share the backend's lock and write check."""
        self._lock = lock
        self._writable = writable
        self._sets: list[tuple[str, bytes, int]] = []

    def save_policy_set(self, digest: str, document: bytes, activated_at: int) -> None:
        """Record a policy-set activation."""
        with self._lock:
            self._writable(f"policy set `{digest}`")
            self._sets.append((digest, bytes(document), activated_at))

    def load_active_policy_set(self) -> tuple[str, bytes] | None:
        """The latest activation, or None."""
        with self._lock:
            return None if not self._sets else (self._sets[-1][0], self._sets[-1][1])


class MemoryVerdicts:
    """Write-once proof verdicts (a ``VerdictStore``, INV-3)."""

    def __init__(self, lock: threading.Lock, writable: Writable) -> None:
        """Share the backend's lock and write check."""
        self._lock = lock
        self._writable = writable
        self._records: dict[str, bytes] = {}

    def get(self, digest: str) -> bytes | None:
        """The record stored under ``digest``, or None."""
        with self._lock:
            return self._records.get(digest)

    def put_once(self, digest: str, record: bytes) -> bytes:
        """Store ``record`` unless ``digest`` has one; return the record now stored."""
        with self._lock:
            self._writable(f"verdict `{digest}`")
            return self._records.setdefault(digest, bytes(record))

    def digests(self) -> list[str]:
        """Every digest with a record, sorted."""
        with self._lock:
            return sorted(self._records)


class MemoryRecordIndex:
    """Which log entries are protocol records (a ``RecordIndex``); payloads come from the log."""

    def __init__(
        self,
        lock: threading.Lock,
        writable: Writable,
        payload: Callable[[int], bytes | None],
    ) -> None:
        """Share the backend's lock and write check; read payloads with ``payload``."""
        self._lock = lock
        self._writable = writable
        self._payload = payload
        self._rows: dict[int, tuple[str, bytes]] = {}
        self._mark = 0

    def add(self, index: int, kind: str, receipt: bytes, *, indexed_to: int) -> None:
        """Index one record, once, and raise the mark to ``indexed_to``."""
        with self._lock:
            self._writable(f"protocol record `{index}`")
            if index in self._rows:
                raise StorageError(f"protocol record `{index}` is already indexed")
            self._rows[index] = (kind, bytes(receipt))
            self._mark = max(self._mark, indexed_to)

    def indexed_to(self) -> int:
        """Every record below this log index is indexed."""
        with self._lock:
            return self._mark

    def set_indexed_to(self, index: int) -> None:
        """Raise the mark to ``index`` (never lowers it)."""
        with self._lock:
            self._writable("the protocol index mark")
            self._mark = max(self._mark, index)

    def records(self) -> list[tuple[int, str, bytes, bytes]]:
        """Every indexed record with its payload from the log, in log order.

        Raises:
            StorageError: an indexed entry is missing from the log.
        """
        with self._lock:
            rows = sorted(self._rows.items())
        out = []
        missing = []
        for index, (kind, receipt) in rows:
            payload = self._payload(index)
            if payload is None:
                missing.append(index)
            else:
                out.append((index, kind, payload, receipt))
        if missing:
            raise StorageError(f"protocol records `{missing[:5]}` are missing from the log")
        return out
