"""An in-memory LogStore and LogReader for the log's tests: dicts, read counter, faults."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sop_verified.errors import LogHeadMovedError, StorageError
from sop_verified.tools.tlog_store import Batch


class MemoryLogStore:
    """Entries, tiles and checkpoints in dicts; ``fail_writes`` makes the next writes raise,
    ``down`` every call (a database that stopped answering; ``up_after`` calls later it
    answers again), ``lose_answers`` the next writes raise after storing their batch (the
    answer to ``COMMIT`` lost with the connection)."""

    def __init__(self) -> None:
        self.entries: dict[int, tuple[bytes, bytes]] = {}
        self.tiles: dict[int, bytes] = {}
        self.checkpoints: dict[int, str] = {}
        self.fail_writes = False
        self.refuse_rebuilds = False  # True: a moved head raises instead of rebuilding
        self.down = False
        self.up_after: int | None = None
        self.lose_answers = 0
        self.reads = 0  # tile and entry rows read
        self.attachments: list[tuple[str, str, bytes]] = []

    # LogStore
    def _answer(self) -> None:
        if self.down and self.up_after is not None:
            self.up_after -= 1
            self.down = self.up_after >= 0
        if self.down:
            raise StorageError("memory log store is not answering (injected)")

    def log_tail(self) -> tuple[int, str | None]:
        self._answer()
        size = max(self.entries, default=-1) + 1
        note = self.checkpoints[max(self.checkpoints)] if self.checkpoints else None
        return size, note

    def read_tiles(self, keys: Sequence[int]) -> dict[int, bytes]:
        self._answer()
        self.reads += len(keys)
        return {k: self.tiles[k] for k in keys if k in self.tiles}

    def write_batch(self, batch: Batch) -> None:
        self._answer()
        if self.fail_writes:
            raise StorageError("memory log store write failed (injected)")
        head = max(self.entries, default=-1) + 1
        if self.refuse_rebuilds and head != batch.start:  # a store that cannot rebuild
            raise LogHeadMovedError(f"head `{head}`, batch starts at `{batch.start}`")
        rebuilt = batch.on_head(head)  # another writer sharing this store went first
        if rebuilt is None:
            return
        batch = rebuilt
        for index, _, _ in batch.entries:
            if index in self.entries:
                raise StorageError(f"entry `{index}` exists")
        for index, leaf, payload in batch.entries:
            self.entries[index] = (leaf, payload)
        self.tiles.update(batch.tiles)
        checkpoint = batch.signed_checkpoint()
        if checkpoint is not None:
            self.checkpoints[checkpoint[0]] = checkpoint[1]
        self.attachments.extend(batch.attachments)
        if self.lose_answers:
            self.lose_answers -= 1
            raise StorageError("consuming input failed: server closed the connection (injected)")

    def read_entries(self, start: int, end: int) -> list[tuple[int, bytes, bytes]]:
        self._answer()
        self.reads += max(0, end - start)
        return [(i, *self.entries[i]) for i in range(start, end) if i in self.entries]

    def read_entries_containing(
        self, start: int, end: int, needles: Sequence[bytes]
    ) -> list[tuple[int, bytes, bytes]]:
        self._answer()
        return [
            (i, *self.entries[i])
            for i in range(start, end)
            if i in self.entries and any(n in self.entries[i][1] for n in needles)
        ]

    def checkpoint_sizes(self, after: int, limit: int) -> list[int]:
        self._answer()
        return sorted(s for s in self.checkpoints if s > after)[:limit]

    def read_checkpoints(self, low: int, high: int) -> list[tuple[int, str]]:
        self._answer()
        return sorted((s, n) for s, n in self.checkpoints.items() if low <= s <= high)

    # LogReader
    def entry_rows(self) -> int:
        return len(self.entries)

    def iter_entries(self, chunk: int) -> Iterator[tuple[int, bytes, bytes]]:
        for i in sorted(self.entries):
            yield (i, *self.entries[i])

    def iter_tiles(self, chunk: int) -> Iterator[tuple[int, bytes]]:
        yield from sorted(self.tiles.items())

    def checkpoints_list(self) -> list[tuple[int, str]]:
        return sorted(self.checkpoints.items())


class MemoryLogReader:
    """The LogReader view of a MemoryLogStore."""

    def __init__(self, store: MemoryLogStore) -> None:
        self.store = store

    def entry_rows(self) -> int:
        return self.store.entry_rows()

    def iter_entries(self, chunk: int) -> Iterator[tuple[int, bytes, bytes]]:
        return self.store.iter_entries(chunk)

    def iter_tiles(self, chunk: int) -> Iterator[tuple[int, bytes]]:
        return self.store.iter_tiles(chunk)

    def read_tiles(self, keys: Sequence[int]) -> dict[int, bytes]:
        return self.store.read_tiles(keys)

    def checkpoints(self) -> list[tuple[int, str]]:
        return self.store.checkpoints_list()
