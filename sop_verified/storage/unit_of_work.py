"""What commits with a batch of log entries, as data: the unit of work.

The persistence index and the small blobs are projections of the log that
must change in the same transaction as the entries they are derived from
(an effect entry and its metadata commit together or not at all, ADR 0005,
ADR 0009). Nothing above storage holds a transaction: the backend derives a
:class:`UnitOfWork` from the batch with :func:`plan_unit` (the
:data:`~sop_verified.storage.persist_index.EntryIndexer` it follows returns
:class:`~sop_verified.storage.persist_index.IndexOps`, data) and applies it in
the batch's own transaction, or applies nothing when the append fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sop_verified.errors import StorageError
from sop_verified.storage.persist_index import EffectRecord, EntryIndexer, IndexOps
from sop_verified.tools.tlog_store import Attachment, Batch

__all__ = ["KeptBlob", "UnitOfWork", "blob_rows", "plan_unit"]


@dataclass(frozen=True, slots=True)
class KeptBlob:
    """A small blob kept in the database under the effect entry that first stored it."""

    effect_index: int
    scope: str
    stored: str
    data: bytes


@dataclass(frozen=True, slots=True)
class UnitOfWork:
    """The index rows and blobs one batch of log entries adds, applied with the batch.

    ``indexed_to`` is the log size the index reflects once the unit is
    applied; ``index`` the rows to insert (and the pending rows to close);
    ``blobs`` the small blobs to keep. A backend applies all of it in the
    transaction that appends the batch, or none of it.
    """

    indexed_to: int
    index: IndexOps = field(default_factory=IndexOps)
    blobs: tuple[KeptBlob, ...] = ()


def plan_unit(batch: Batch, indexer: EntryIndexer | None) -> UnitOfWork | None:
    """The unit of work of ``batch`` when the index is at its start.

    Args:
        batch: The batch the log is about to write.
        indexer: What log entries change in the index; None: no index is kept.

    Returns:
        The unit, or None when no index is kept and the batch has no blobs.

    Raises:
        StorageError: a blob that no written effect of the batch records, or
            blobs without a persistence index (nothing is committed).
    """
    if indexer is None:
        if batch.attachments:
            raise StorageError("small blobs are kept only with the persistence index")
        return None
    ops = indexer([(i, p) for i, _, p in batch.entries])
    blobs = blob_rows(batch.attachments, ops.effects) if batch.attachments else ()
    return UnitOfWork(batch.start + len(batch.entries), ops, blobs)


def blob_rows(
    attachments: Sequence[Attachment], effects: Sequence[EffectRecord]
) -> tuple[KeptBlob, ...]:
    """Each blob with the index of the batch's first written effect of its ``(scope, stored)``.

    Raises:
        StorageError: a blob that no written effect of the batch records.
    """
    holder: dict[tuple[str, str], int] = {}
    for e in effects:
        if e.outcome == "written":
            holder.setdefault((e.scope, e.stored), e.effect_index)
    rows: dict[tuple[str, str], KeptBlob] = {}
    for scope, stored, data in attachments:
        index = holder.get((scope, stored))
        if index is None:  # spec: INV-9 — no blob is kept without the effect that records it
            raise StorageError(f"blob `{stored}` of scope `{scope}` has no effect in its batch")
        rows.setdefault((scope, stored), KeptBlob(index, scope, stored, data))
    return tuple(rows.values())
