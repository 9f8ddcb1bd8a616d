"""What a tamper-evident log needs from a storage backend, and the values it passes.

:class:`~sop_verified.tools.tlog.TransparencyLog` keeps the log's logic (the
compact range, group commit, checkpoint signing, proofs) and talks to storage
only through :class:`LogStore`; the full audit (:mod:`sop_verified.tools.tlog_audit`)
reads through :class:`LogReader`. SQLite (``sop_verified.storage.sqlite_log``)
and PostgreSQL (``sop_verified.storage.postgres_log``) implement both.

Complete subtrees are stored as tiles (:mod:`sop_verified.tools.tlog_tiles`),
addressed by an integer key that sorts in the order tiles complete, so a
backend appends them in key order and an audit streams them in that order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sop_verified.errors import LogHeadMovedError

__all__ = [
    "MAX_STORED_SIZE",
    "Attachment",
    "Batch",
    "LinkedPart",
    "LogReader",
    "LogStore",
    "Receipt",
]

Attachment = tuple[str, str, bytes]
"""Content stored with a batch: ``(namespace, key, bytes)`` (see :class:`Batch`)."""

MAX_STORED_SIZE = 1 << 56
"""Most entries a stored log holds: tile keys stay below ``2**63`` (a signed 64-bit column)."""


@dataclass(frozen=True, slots=True)
class LinkedPart:
    """An entry to append and, optionally, the entry linked to it (ADR 0007).

    ``then`` builds the second entry from the first one's index (the
    committing thread calls it once); ``attachments`` are content rows stored
    in the same transaction when the part is appended.
    """

    first: bytes
    then: Callable[[int], bytes] | None = None
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True)
class Receipt:
    """What an append acknowledges, once durable: index, leaf hash and the covering checkpoint.

    ``checkpoint`` is the signed C2SP checkpoint note of the batch that holds
    the entry (``None`` for an unsigned log); it commits to a tree of
    ``tree_size`` entries, ``index < tree_size``.
    """

    index: int
    leaf_hash: bytes
    tree_size: int
    checkpoint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready form (the leaf hash in lowercase hex).

        Returns:
            ``{"index", "leaf_hash", "tree_size", "checkpoint"}``.
        """
        return {
            "index": self.index,
            "leaf_hash": self.leaf_hash.hex(),
            "tree_size": self.tree_size,
            "checkpoint": self.checkpoint,
        }


@dataclass(frozen=True, slots=True)
class Batch:
    """One group commit: entries from ``start`` on, the tiles they complete, the checkpoint.

    ``entries`` are ``(index, leaf hash, payload)``; ``tiles`` are ``(tile key,
    960 bytes)`` in key order; ``checkpoint`` is ``(size, signed note)`` or
    None for an unsigned log; ``attachments`` are content rows ``(namespace,
    key, bytes)`` that an entry of the batch records (the persistence
    controller's small content-addressed blobs, ADR 0007: the key names the
    digest of the bytes, so a backend stores or replaces the row). A backend
    writes all of it in one durable transaction or nothing.

    ``sign``, when given, signs the checkpoint instead: a backend calls it (through
    :meth:`signed_checkpoint`) only once its transaction holds the log's head at
    ``start``, so no checkpoint is ever signed for a head another writer moved (a
    PostgreSQL replica's lease on signing is the head row's lock, ADR 0017).
    """

    start: int
    entries: Sequence[tuple[int, bytes, bytes]]
    tiles: Sequence[tuple[int, bytes]]
    checkpoint: tuple[int, str] | None
    attachments: Sequence[Attachment] = ()
    sign: Callable[[], str] | None = None
    rebuild: Callable[[int], Batch | None] | None = None
    """For a store several writers share: called with the head the store found, under its
    lock, when it is not ``start``; gives the same work built on that head (None: nothing
    left to write). Without it, such a store raises ``LogHeadMovedError``."""

    def on_head(self, head: int) -> Batch | None:
        """The batch to write at ``head`` (held under the store's lock): this one, or rebuilt.

        Raises:
            LogHeadMovedError: the head is not ``start`` and the batch cannot be rebuilt.
        """
        if head == self.start:
            return self
        if self.rebuild is None:
            raise LogHeadMovedError(
                f"the log's head is at `{head}` but the batch starts at `{self.start}`:"
                " another writer appended; the batch is not written"
            )
        again = self.rebuild(head)
        if again is not None and again.start != head:  # spec: INV-5 — contiguous, never a gap
            raise LogHeadMovedError(f"the rebuilt batch starts at `{again.start}`, not `{head}`")
        return again

    def signed_checkpoint(self) -> tuple[int, str] | None:
        """The checkpoint to store: ``(size, note)``, signed now if ``sign`` is set.

        Call it with the log's head held at ``start`` (inside the batch's transaction).
        """
        if self.sign is None:
            return self.checkpoint
        return self.start + len(self.entries), self.sign()


class LogStore(Protocol):
    """The storage a :class:`~sop_verified.tools.tlog.TransparencyLog` appends to.

    Every method raises :class:`~sop_verified.errors.StorageError` when the
    backend fails.
    """

    def log_tail(self) -> tuple[int, str | None]:
        """Return the number of entries and the latest checkpoint note (None if none), O(1)."""

    def read_tiles(self, keys: Sequence[int]) -> dict[int, bytes]:
        """Return the stored tiles of the given keys (keys not stored are left out)."""

    def write_batch(self, batch: Batch) -> None:
        """Write entries, tiles and checkpoint in one durable transaction, or nothing."""

    def read_entries_containing(
        self, start: int, end: int, needles: Sequence[bytes]
    ) -> list[tuple[int, bytes, bytes]]:
        """Entries ``[start, end)`` whose payload contains one of ``needles``, in order."""

    def read_entries(self, start: int, end: int) -> list[tuple[int, bytes, bytes]]:
        """Return entries ``[start, end)`` as ``(index, leaf hash, payload)``."""

    def checkpoint_sizes(self, after: int, limit: int) -> list[int]:
        """The sizes of the stored checkpoints past ``after``, ascending, at most ``limit``."""

    def read_checkpoints(self, low: int, high: int) -> list[tuple[int, str]]:
        """The stored checkpoints of sizes in ``[low, high]`` as ``(size, note)``, ascending."""


class LogReader(Protocol):
    """Everything a full audit reads, streamed in order (``sop log verify``)."""

    def entry_rows(self) -> int:
        """Return the number of entry rows (not the largest index)."""

    def iter_entries(self, chunk: int) -> Iterator[tuple[int, bytes, bytes]]:
        """Yield every entry row as ``(index, leaf hash, payload)`` in index order."""

    def iter_tiles(self, chunk: int) -> Iterator[tuple[int, bytes]]:
        """Yield every stored tile as ``(key, bytes)`` in key order."""

    def read_tiles(self, keys: Sequence[int]) -> dict[int, bytes]:
        """Return the stored tiles of the given keys (keys not stored are left out)."""

    def checkpoints(self) -> list[tuple[int, str]]:
        """Return every stored checkpoint as ``(size, note)`` in size order."""
