"""The kernel's ports: what core/ needs from the outside, as structural protocols.

The storage roles (:class:`CapabilityStore`, :class:`PolicyStore`) are declared
in :mod:`sop_verified.storage.ports`, with every other role, and re-exported
here; storage/ implements them without importing core, nexus/ wires them.
The log the kernel records decisions in is :class:`DecisionLog`: the methods
the kernel calls, and nothing else (``storage.ports.EntryLog`` provides them).
Every method that fails raises :class:`~sop_verified.errors.StorageError`;
the kernel turns that into DENY (INV-2).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from sop_verified.storage.ports import CapabilityStore, PolicyStore
from sop_verified.tools.tlog_store import LinkedPart, Receipt

__all__ = ["CapabilityStore", "Clock", "DecisionLog", "PolicyStore", "ReceiptLog"]

Clock = Callable[[], int]
"""Returns the current time as integer Unix seconds (injected; tests pin it)."""


class ReceiptLog(Protocol):
    """A log that answers each append with a receipt (what protocol ledgers and refusals use)."""

    def append_receipt(self, payload: bytes) -> Receipt:
        """Durably append one entry; return its receipt (index, leaf hash, checkpoint)."""


class DecisionLog(ReceiptLog, Protocol):
    """The tamper-evident log, as far as the kernel needs it (INV-9).

    :meth:`append_receipt` records one decision (``submit``); :meth:`append_parts`
    records a batch of decisions, each maybe with the effect entry linked to it,
    in one durable transaction (``submit_batch``, ADR 0007). The kernel calls
    nothing else (not ``append``: every decision gets its receipt).
    """

    def append_parts(
        self, parts: Sequence[LinkedPart]
    ) -> list[tuple[Receipt, Receipt | None] | Exception]:
        """Durably append every part (an entry, then maybe the entry built from its index).

        Args:
            parts: the parts, in order.

        Returns:
            Per part, in order: its receipts (the second None for a part without a
            linked entry), or the error that left that part out (the others stand).

        Raises:
            StorageError: the backend failed; nothing was acknowledged.
        """
