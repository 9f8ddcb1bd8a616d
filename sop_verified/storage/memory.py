"""In-memory storage for kernel tests: three of the kernel's ports without a disk.

The full in-memory reference backend, every storage role and the unit of
work, is :class:`~sop_verified.storage.memory_backend.MemoryBackend` (the
conformance suite runs on it); this module keeps the small combined store
the kernel and capability tests inject faults into.

:class:`MemoryStore` implements the ``CapabilityStore``, ``PolicyStore`` and
``DecisionLog`` ports of ``sop_verified.core.ports`` structurally (storage/
never imports core). It keeps the same rules as the durable backends:
capabilities are write-once by id, revocations are written once (the first
time wins), the log only grows. Setting :attr:`MemoryStore.fail_writes`
makes every write raise :class:`~sop_verified.errors.StorageError`, to test
fail-closed paths; :meth:`MemoryStore.snapshot` returns a deep copy of the
contents to compare before and after an operation.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sop_verified.errors import StorageError

__all__ = ["MemoryStore", "MemoryStoreSnapshot"]


@dataclass(frozen=True)
class MemoryStoreSnapshot:
    """An immutable copy of everything a :class:`MemoryStore` holds."""

    capabilities: tuple[tuple[str, str | None, bytes], ...]
    revocations: tuple[tuple[str, int], ...]
    policy_sets: tuple[tuple[str, bytes, int], ...]
    log: tuple[bytes, ...]


@dataclass
class _State:
    capabilities: list[tuple[str, str | None, bytes]] = field(default_factory=list)
    capability_ids: set[str] = field(default_factory=set)
    revocations: dict[str, int] = field(default_factory=dict)
    policy_sets: list[tuple[str, bytes, int]] = field(default_factory=list)
    log: list[bytes] = field(default_factory=list)


class MemoryStore:
    """Capability store, policy store and decision log, in memory, thread-safe."""

    def __init__(self) -> None:
        """Start empty, with writes enabled."""
        self._lock = threading.Lock()
        self._state = _State()
        self.fail_writes = False

    def _writable(self, what: str) -> None:
        if self.fail_writes:
            raise StorageError(f"memory store write failed (injected) while saving {what}")

    # CapabilityStore
    def save_capability(self, cap_id: str, parent_id: str | None, claims: bytes) -> None:
        """Store an admitted capability's canonical claims (write-once by id).

        Raises:
            StorageError: ``cap_id`` is already stored, or writes are failing.
        """
        with self._lock:
            self._writable(f"capability `{cap_id}`")
            if cap_id in self._state.capability_ids:
                raise StorageError(f"capability `{cap_id}` is already stored (write-once)")
            self._state.capability_ids.add(cap_id)
            self._state.capabilities.append((cap_id, parent_id, bytes(claims)))

    def load_capabilities(self) -> list[tuple[str, str | None, bytes]]:
        """All admitted capabilities as (id, parent id, claims), in admission order."""
        with self._lock:
            return list(self._state.capabilities)

    def save_revocation(self, cap_id: str, at: int) -> None:
        """Record a revocation, once.

        Raises:
            StorageError: writes are failing, or ``cap_id`` is already recorded.
        """
        with self._lock:
            self._writable(f"revocation of `{cap_id}`")
            if cap_id in self._state.revocations:
                raise StorageError(f"the revocation of `{cap_id}` is already recorded")
            self._state.revocations[cap_id] = at

    def load_revocations(self) -> dict[str, int]:
        """All revocations, id to time."""
        with self._lock:
            return dict(self._state.revocations)

    # PolicyStore
    def save_policy_set(self, digest: str, document: bytes, activated_at: int) -> None:
        """Record the activation of a policy set.

        Raises:
            StorageError: writes are failing.
        """
        with self._lock:
            self._writable(f"policy set `{digest}`")
            self._state.policy_sets.append((digest, bytes(document), activated_at))

    def load_active_policy_set(self) -> tuple[str, bytes] | None:
        """The most recently activated policy set as (digest, document), or None."""
        with self._lock:
            if not self._state.policy_sets:
                return None
            digest, document, _ = self._state.policy_sets[-1]
            return digest, document

    # DecisionLog
    def append(self, payload: bytes) -> int:
        """Append one entry and return its index (0-based).

        Raises:
            StorageError: writes are failing.
        """
        with self._lock:
            self._writable("a log entry")
            self._state.log.append(bytes(payload))
            return len(self._state.log) - 1

    def log_size(self) -> int:
        """The number of log entries."""
        with self._lock:
            return len(self._state.log)

    def snapshot(self) -> MemoryStoreSnapshot:
        """Return an immutable copy of the whole contents."""
        with self._lock:
            return MemoryStoreSnapshot(
                capabilities=tuple(self._state.capabilities),
                revocations=tuple(sorted(self._state.revocations.items())),
                policy_sets=tuple(self._state.policy_sets),
                log=tuple(self._state.log),
            )
