"""The typed parts a decision may carry besides its answer (docs/DECISION_JSON.md).

The kernel fills ``entry_digest`` (or ``dry_run``); the persistence controller
adds the :class:`WriteResult` of an ALLOW it carried out; a refusal names the
decision it refused (``decision_index``); a protocol adds its own record, any
value with :meth:`ProtocolRecord.json_fields` (core does not know the protocols).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from sop_verified.core.contracts import ensure
from sop_verified.tools.tlog_store import Receipt

__all__ = ["ProtocolRecord", "WriteResult"]


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What an allowed persist action wrote: the ``persist.effect`` entry and the object.

    Attributes:
        outcome: ``written`` (stored now) or ``unchanged`` (the same bytes were there).
        index: the effect entry's log index (after its decision's, INV-9).
        scope: the persistence scope.
        name: the object's name in the scope.
        stored: the stored file's path, relative to the scope's root.
        digest: ``sha256:<hex>`` of the bytes.
        size: the number of bytes.
        version: the object's version after the write (None when no live object).
        receipt: the effect entry's receipt.
    """

    outcome: str
    index: int
    scope: str
    name: str
    stored: str
    digest: str
    size: int
    version: int | None
    receipt: Receipt

    @ensure(
        lambda self, result: (result["index"], result["digest"]) == (self.index, self.digest),
        helper=True,
    )
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the receipt as :meth:`Receipt.to_dict`)."""
        return {
            "outcome": self.outcome,
            "index": self.index,
            "scope": self.scope,
            "name": self.name,
            "stored": self.stored,
            "digest": self.digest,
            "size": self.size,
            "version": self.version,
            "receipt": self.receipt.to_dict(),
        }


class ProtocolRecord(Protocol):
    """What a protocol (DRAC, EMP, CSP) adds to its ALLOW: a frozen record of its own."""

    def json_fields(self) -> dict[str, Any]:
        """The top-level keys this record adds to the decision's JSON form."""
