"""The log's tables in memory, applying each batch's unit of work atomically with it.

:class:`MemoryLogStore` is the reference ``AtomicLogStore``: it checks a
batch as a database's constraints would (entries continue the log, tile keys
and checkpoint sizes are new), applies the batch's unit of work to a copy of
the index and swaps both in only when everything succeeded, so a failed
append leaves the entries, tiles, checkpoints and index as they were.
Entries, tiles and checkpoints are insert-only (INV-5).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sop_verified.errors import LogHeadMovedError, StorageError
from sop_verified.storage.memory_index import IndexState, apply_unit, catch_up
from sop_verified.storage.persist_index import EntryIndexer
from sop_verified.storage.unit_of_work import UnitOfWork, plan_unit
from sop_verified.tools.tlog_store import Batch

__all__ = ["LogState", "MemoryLogStore"]


@dataclass
class LogState:
    """The log's rows: entries in index order, tiles by key, checkpoints by size."""

    entries: list[tuple[int, bytes, bytes]] = field(default_factory=list)
    tiles: dict[int, bytes] = field(default_factory=dict)
    checkpoints: dict[int, str] = field(default_factory=dict)


class MemoryLogStore:
    """The log tables of a :class:`~sop_verified.storage.memory_backend.MemoryBackend`."""

    def __init__(
        self,
        lock: threading.Lock,
        log: LogState,
        index: Callable[[], IndexState],
        swap_index: Callable[[IndexState], None],
        writable: Callable[[str], None],
    ) -> None:
        """Share the backend's lock and rows.

        Args:
            lock: The backend's lock (held for every read and write).
            log: The log's rows.
            index: The current index state.
            swap_index: Installs a new index state (called under ``lock``).
            writable: Raises StorageError when writes are made to fail.
        """
        self._lock = lock
        self._log = log
        self._index = index
        self._swap_index = swap_index
        self._writable = writable
        self._indexer: EntryIndexer | None = None

    def log_tail(self) -> tuple[int, str | None]:
        """Return the entry count and the latest checkpoint note."""
        with self._lock:
            size = len(self._log.entries)
            note = (
                self._log.checkpoints[max(self._log.checkpoints)] if self._log.checkpoints else None
            )
        return size, note

    def read_tiles(self, keys: Sequence[int]) -> dict[int, bytes]:
        """Return the stored tiles among ``keys``."""
        with self._lock:
            return {k: self._log.tiles[k] for k in keys if k in self._log.tiles}

    def read_entries_containing(
        self, start: int, end: int, needles: Sequence[bytes]
    ) -> list[tuple[int, bytes, bytes]]:
        """Entries ``[start, end)`` whose payload contains one of ``needles``."""
        return [e for e in self.read_entries(start, end) if any(n in e[2] for n in needles)]

    def read_entries(self, start: int, end: int) -> list[tuple[int, bytes, bytes]]:
        """Return entries ``[start, end)`` as ``(index, leaf hash, payload)``."""
        with self._lock:
            return list(self._log.entries[max(0, start) : max(0, end)])

    def checkpoint_sizes(self, after: int, limit: int) -> list[int]:
        """The sizes of the stored checkpoints past ``after``, ascending, at most ``limit``."""
        with self._lock:
            return sorted(s for s in self._log.checkpoints if s > after)[: max(0, limit)]

    def read_checkpoints(self, low: int, high: int) -> list[tuple[int, str]]:
        """The stored checkpoints of sizes in ``[low, high]`` as ``(size, note)``, ascending."""
        with self._lock:
            return sorted((s, n) for s, n in self._log.checkpoints.items() if low <= s <= high)

    def follow(self, indexer: EntryIndexer) -> None:
        """Index every stored entry not indexed yet, then derive each batch's unit with ``indexer``.

        Raises:
            StorageError: writes are failing.
        """
        with self._lock:
            self._writable("the index catch-up")
            state = self._index().copy()
            catch_up(state, indexer, [(i, p) for i, _, p in self._log.entries[state.indexed_to :]])
            self._swap_index(state)
            self._indexer = indexer

    def write_batch(self, batch: Batch) -> None:
        """Append the batch and apply the unit of work its entries imply (see :meth:`commit`).

        Raises:
            StorageError: the write failed, or a blob no effect of the batch
                records; nothing is stored.
        """
        self.commit(batch, plan_unit(batch, self._indexer))

    def commit(self, batch: Batch, unit: UnitOfWork | None) -> None:
        """Write ``batch`` and apply ``unit`` together, or neither.

        Raises:
            StorageError: the batch does not continue the log, repeats a tile
                or checkpoint, the index cannot be brought to the batch's
                start, or writes are failing; nothing is stored.
        """
        with self._lock:
            self._writable("a log batch")
            log = self._log
            if batch.start != len(log.entries) or any(
                i != batch.start + k for k, (i, _, _) in enumerate(batch.entries)
            ):
                if batch.start != len(log.entries):  # another writer of a shared log went first
                    raise LogHeadMovedError(
                        f"the log's head is `{len(log.entries)}`, not `{batch.start}`"
                    )
                raise StorageError(f"the batch at `{batch.start}` does not continue the log")
            if any(key in log.tiles for key, _ in batch.tiles) or len(
                {k for k, _ in batch.tiles}
            ) != len(batch.tiles):
                raise StorageError("a tile of the batch is already stored (the log is append-only)")
            checkpoint = batch.signed_checkpoint()  # the head is held: sign now (INV-5)
            if checkpoint is not None and checkpoint[0] in log.checkpoints:
                raise StorageError(f"a checkpoint of size `{checkpoint[0]}` is stored")
            state = None
            if unit is not None:
                state = self._index().copy()
                if state.indexed_to != batch.start:
                    if self._indexer is None or state.indexed_to > batch.start:
                        raise StorageError(
                            f"the persistence index is at `{state.indexed_to}`,"
                            f" not at the batch's start `{batch.start}`"
                        )
                    behind = [(i, p) for i, _, p in log.entries[state.indexed_to :]]
                    catch_up(state, self._indexer, behind)
                apply_unit(state, unit)
            # everything checked and computed: commit the batch and the unit together
            log.entries.extend((int(i), bytes(h), bytes(p)) for i, h, p in batch.entries)
            log.tiles.update((int(k), bytes(t)) for k, t in batch.tiles)
            if checkpoint is not None:
                log.checkpoints[checkpoint[0]] = checkpoint[1]
            if state is not None:
                self._swap_index(state)
