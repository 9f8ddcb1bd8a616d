"""The kernel's ports: what core/ needs from the outside, as structural protocols.

The storage roles (:class:`CapabilityStore`, :class:`PolicyStore`) are declared
in :mod:`sop_verified.storage.ports`, with every other role, and re-exported
here; storage/ implements them without importing core, nexus/ wires them.
Every method that fails raises :class:`~sop_verified.errors.StorageError`;
the kernel turns that into DENY (INV-2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from sop_verified.storage.ports import CapabilityStore, PolicyStore
from sop_verified.tools.tlog_store import Receipt

__all__ = ["CapabilityStore", "Clock", "DecisionLog", "PolicyStore", "ReceiptLog"]

Clock = Callable[[], int]
"""Returns the current time as integer Unix seconds (injected; tests pin it)."""


class DecisionLog(Protocol):
    """The tamper-evident log, as far as the kernel needs it (INV-9)."""

    def append(self, payload: bytes) -> int:
        """Durably append one canonical entry; return its index; raise StorageError on failure."""


class ReceiptLog(DecisionLog, Protocol):
    """A decision log that also hands back a receipt: what the kernel prefers when offered."""

    def append_receipt(self, payload: bytes) -> Receipt:
        """Durably append one entry; return its receipt (index, leaf hash, checkpoint)."""
