"""The kernel's ports: what core/ needs from the outside, as structural protocols.

storage/ implements these without importing core (structural typing), nexus/
wires them. Every method that fails raises :class:`~sop_verified.errors.StorageError`;
the kernel turns that into DENY (INV-2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from sop_verified.tools.tlog_store import Receipt

__all__ = ["CapabilityStore", "Clock", "DecisionLog", "PolicyStore", "ReceiptLog"]

Clock = Callable[[], int]
"""Returns the current time as integer Unix seconds (injected; tests pin it)."""


class CapabilityStore(Protocol):
    """Durable record of admitted capabilities and revocations."""

    def save_capability(self, cap_id: str, parent_id: str | None, claims: bytes) -> None:
        """Store an admitted capability's canonical claims (write-once by id)."""

    def load_capabilities(self) -> list[tuple[str, str | None, bytes]]:
        """All admitted capabilities as (id, parent id, canonical claims), in admission order."""

    def save_revocation(self, cap_id: str, at: int) -> None:
        """Record that ``cap_id`` was revoked at time ``at`` (idempotent)."""

    def load_revocations(self) -> dict[str, int]:
        """All revocations, id to time."""


class PolicyStore(Protocol):
    """Durable record of activated policy sets."""

    def save_policy_set(self, digest: str, document: bytes, activated_at: int) -> None:
        """Record the activation of a policy set (its canonical document)."""

    def load_active_policy_set(self) -> tuple[str, bytes] | None:
        """The most recently activated policy set as (digest, canonical document), or None."""


class DecisionLog(Protocol):
    """The tamper-evident log, as far as the kernel needs it (INV-9)."""

    def append(self, payload: bytes) -> int:
        """Durably append one canonical entry; return its index; raise StorageError on failure."""


class ReceiptLog(DecisionLog, Protocol):
    """A decision log that also hands back a receipt: what the kernel prefers when offered."""

    def append_receipt(self, payload: bytes) -> Receipt:
        """Durably append one entry; return its receipt (index, leaf hash, checkpoint)."""
