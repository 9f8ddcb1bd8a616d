"""The in-memory reference backend: every storage role, no disk, the same rules as SQLite.

:class:`MemoryBackend` is a real implementation of the ports of
:mod:`sop_verified.storage.ports`, not a mock: the log is a
:class:`~sop_verified.tools.tlog.TransparencyLog` over
:class:`~sop_verified.storage.memory_log.MemoryLogStore`, whose batches apply
their unit of work (index rows, small blobs) atomically; the tests in
tests/storage/conformance/ run on it and on SQLite alike. Setting
:attr:`MemoryBackend.fail_writes` makes every write raise
:class:`~sop_verified.errors.StorageError` before it changes anything.
"""

from __future__ import annotations

import threading
from pathlib import Path

from sop_verified.errors import IntegrityError, StorageError
from sop_verified.storage.entry_log import StoreLog
from sop_verified.storage.memory_content import MemoryScopeContent, Stored
from sop_verified.storage.memory_index import IndexState, MemoryBlobs, MemoryPersistIndex
from sop_verified.storage.memory_log import LogState, MemoryLogStore
from sop_verified.storage.memory_roles import (
    MemoryCapabilities,
    MemoryPolicies,
    MemoryRecordIndex,
    MemoryVerdicts,
)
from sop_verified.storage.persist_index import EntryIndexer

__all__ = ["MemoryBackend"]


class MemoryBackend:
    """Every storage role in memory, thread-safe (a ``StorageBackend``)."""

    def __init__(self) -> None:
        """Start empty, with writes enabled."""
        self._lock = threading.Lock()
        self.fail_writes = False
        self._rows = LogState()
        self._index = IndexState()
        self._log_store = MemoryLogStore(
            self._lock, self._rows, self._index_state, self._swap_index, self._writable
        )
        self._log = StoreLog(self._log_store)
        self._blobs = MemoryBlobs(self._lock, self._index_state)
        self._persist = MemoryPersistIndex(self._lock, self._index_state, self._blobs)
        self._capabilities = MemoryCapabilities(self._lock, self._writable)
        self._policies = MemoryPolicies(self._lock, self._writable)
        self._verdicts = MemoryVerdicts(self._lock, self._writable)
        self._records = MemoryRecordIndex(self._lock, self._writable, self._payload)
        self._closed = False
        self._config: str | None = None
        self._content: Stored = {}

    def _writable(self, what: str) -> None:
        if self._closed:
            raise StorageError(f"the memory backend is closed; cannot save {what}")
        if self.fail_writes:
            raise StorageError(f"memory backend write failed (injected) while saving {what}")

    def _index_state(self) -> IndexState:
        return self._index

    def _swap_index(self, state: IndexState) -> None:
        self._index = state

    def _payload(self, index: int) -> bytes | None:
        entries = self._log_store.read_entries(index, index + 1)
        return entries[0][2] if entries else None

    @property
    def log(self) -> StoreLog:
        """The tamper-evident log (closed until opened with its checkpoint key)."""
        return self._log

    @property
    def log_store(self) -> MemoryLogStore:
        """The log's tables."""
        return self._log_store

    @property
    def capabilities(self) -> MemoryCapabilities:
        """Admitted capabilities and revocations."""
        return self._capabilities

    @property
    def policies(self) -> MemoryPolicies:
        """Activated policy sets."""
        return self._policies

    @property
    def verdicts(self) -> MemoryVerdicts:
        """Write-once proof verdicts."""
        return self._verdicts

    @property
    def persist(self) -> MemoryPersistIndex:
        """The persistence index (its small blobs included)."""
        return self._persist

    @property
    def blobs(self) -> MemoryBlobs:
        """The small blobs."""
        return self._blobs

    @property
    def records(self) -> MemoryRecordIndex:
        """The protocol record index."""
        return self._records

    def open_scope(self, name: str, root: str, base: Path) -> MemoryScopeContent:
        """The bytes of scope ``name``, in memory (``root`` and ``base`` are not used)."""
        del root, base
        return MemoryScopeContent(self._lock, self._content, name, self._writable)

    def set_entry_indexer(self, indexer: EntryIndexer) -> None:
        """Keep the persistence index in step with the log (see :meth:`MemoryLogStore.follow`)."""
        self._log_store.follow(indexer)

    def self_test(self) -> None:
        """Check that the entries are numbered in order; raise StorageError otherwise."""
        entries = self._log_store.read_entries(0, self._log_store.log_tail()[0])
        if any(i != k for k, (i, _, _) in enumerate(entries)):
            raise StorageError("the memory log's entries are out of order")

    def accept_config(self, config: str) -> None:
        """Remember ``config`` as the accepted configuration."""
        self._config = config

    def verify_state(self, log_size: int, config: str | None = None) -> None:
        """Nothing to check: this state lives in the process, out of an attacker's reach.

        The threat INV-11 answers is someone who edits what is stored; the
        in-memory reference stores nothing outside the process. It still
        checks the one thing it can: that it belongs to a log of ``log_size``.

        Raises:
            IntegrityError: the log holds another number of entries.
        """
        size = self._log_store.log_tail()[0]
        if size != log_size:
            raise IntegrityError(f"the memory log holds `{size}` entries, expected `{log_size}`")
        accepted = self._config
        if config is not None and accepted is not None and accepted != config:
            raise IntegrityError(f"the configuration `{config}` is not the accepted `{accepted}`")

    def close(self) -> None:
        """Refuse writes from now on."""
        self._closed = True
