"""Storage's ports: one Protocol per role, with no driver type in any signature.

Each role is a projection of the signed log (DESIGN.md §7) or the log itself:

- :class:`EntryLog`: the tamper-evident log (append, receipts, linked parts,
  entries, the tail check), opened with its checkpoint key, or explicitly
  without one through ``unsafe_open_unsigned``;
- :class:`CapabilityStore`: admitted capabilities and revocations;
- :class:`PolicyStore`: activated policy sets;
- :class:`VerdictStore`: write-once proof verdicts (INV-3);
- :class:`PersistIndex`: the persistence index, and :class:`BlobStore`, the
  small blobs kept in the database;
- :class:`ScopeContent`: the bytes of one scope, wherever the backend keeps
  them (files under the data directory for SQLite, rows of the shared
  database for PostgreSQL), handed out by :meth:`StorageBackend.open_scope`;
- :class:`RecordIndex`: which log entries are protocol records;
- :class:`AtomicLogStore`: the log's tables, which append a batch and apply
  its :class:`~sop_verified.storage.unit_of_work.UnitOfWork` (index rows,
  blobs) in one transaction;
- :class:`StorageBackend`: one database handing out every role.

core/ imports these (``core/ports.py``, ``core/persistence/ports.py``
re-export the ones the kernel and the persistence controller use); nexus/
wires a backend (:class:`~sop_verified.storage.sqlite.SQLiteBackend`,
:class:`~sop_verified.storage.postgres.PostgresBackend`, or the in-memory
reference :class:`~sop_verified.storage.memory_backend.MemoryBackend`).
Every method that fails raises :class:`~sop_verified.errors.StorageError`,
which the kernel turns into DENY (INV-2). tests/storage/conformance/ holds
what every backend must pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from sop_verified.storage.persist_index import (
    EntryIndexer,
    ObjectRecord,
    PendingDecision,
    PurgeRecord,
)
from sop_verified.storage.unit_of_work import UnitOfWork
from sop_verified.tools.signed_note import Signer, Verifier
from sop_verified.tools.tlog import OnCheckpoint, TransparencyLog
from sop_verified.tools.tlog_store import Batch, LinkedPart, LogStore, Receipt

__all__ = [
    "DEFAULT_ORIGIN",
    "AtomicLogStore",
    "BlobStore",
    "CapabilityStore",
    "EntryLog",
    "PersistIndex",
    "PolicyStore",
    "RecordIndex",
    "ScopeContent",
    "StorageBackend",
    "VerdictStore",
]

DEFAULT_ORIGIN = "sop.local/log"
"""The checkpoint origin line when the configuration names none."""


class CapabilityStore(Protocol):
    """Durable record of admitted capabilities and revocations."""

    def save_capability(self, cap_id: str, parent_id: str | None, claims: bytes) -> None:
        """Store an admitted capability's canonical claims (write-once by id)."""

    def load_capabilities(self) -> list[tuple[str, str | None, bytes]]:
        """All admitted capabilities as (id, parent id, canonical claims), in admission order."""

    def save_revocation(self, cap_id: str, at: int) -> None:
        """Record that ``cap_id`` was revoked at time ``at``, once (a second record is refused)."""

    def load_revocations(self) -> dict[str, int]:
        """All revocations, id to time."""


class PolicyStore(Protocol):
    """Durable record of activated policy sets."""

    def save_policy_set(self, digest: str, document: bytes, activated_at: int) -> None:
        """Record the activation of a policy set (its canonical document)."""

    def load_active_policy_set(self) -> tuple[str, bytes] | None:
        """The most recently activated policy set as (digest, canonical document), or None."""


class VerdictStore(Protocol):
    """Durable, write-once proof verdicts by obligation digest (INV-3)."""

    def get(self, digest: str) -> bytes | None:
        """The record stored under ``digest``, or None."""

    def put_once(self, digest: str, record: bytes) -> bytes:
        """Store ``record`` under ``digest`` unless one exists; return the record now stored."""

    def digests(self) -> list[str]:
        """Every digest with a record, sorted."""


class EntryLog(Protocol):
    """The tamper-evident log (INV-5, INV-9): one instance per backend, opened once."""

    def open(
        self,
        *,
        signer: Signer,
        origin: str = DEFAULT_ORIGIN,
        trusted: tuple[Verifier, ...] = (),
        on_checkpoint: OnCheckpoint | None = None,
    ) -> TransparencyLog:
        """Open the log with its checkpoint key, checking the tail against the last checkpoint;
        ``on_checkpoint`` is told each checkpoint once its batch committed."""

    def unsafe_open_unsigned(
        self, *, origin: str = DEFAULT_ORIGIN, trusted: tuple[Verifier, ...] = ()
    ) -> TransparencyLog:
        """DANGER: open the log without a checkpoint key (tests, read-only audits); warns."""

    @property
    def opened(self) -> TransparencyLog:
        """The opened log; raises StorageError before :meth:`open`."""

    def append(self, payload: bytes) -> int:
        """Durably append one entry (group commit); return its index."""

    def append_receipt(self, payload: bytes) -> Receipt:
        """Durably append one entry (group commit); return its receipt."""

    def append_parts(
        self, parts: Sequence[LinkedPart]
    ) -> list[tuple[Receipt, Receipt | None] | Exception]:
        """Durably append several parts (an entry, maybe its linked entry) in one transaction."""

    def log_size(self) -> int:
        """Number of entries in the log."""

    def log_entries(self, start: int = 0, end: int | None = None) -> list[tuple[int, bytes, bytes]]:
        """Entries ``[start, end)`` as (index, leaf hash, payload)."""

    def log_entries_containing(
        self, start: int, end: int, needles: Sequence[bytes]
    ) -> list[tuple[int, bytes, bytes]]:
        """Entries ``[start, end)`` whose payload contains one of ``needles``, in order."""

    def verify_tail(self) -> None:
        """Check the last leaf hash, stored nodes and latest checkpoint (IntegrityError)."""


class AtomicLogStore(LogStore, Protocol):
    """The log's tables, which apply a batch's unit of work in the batch's transaction."""

    def commit(self, batch: Batch, unit: UnitOfWork | None) -> None:
        """Write ``batch`` and apply ``unit`` in one durable transaction, or neither.

        Raises:
            StorageError: the write failed; nothing of the batch or the unit is stored.
        """

    def follow(self, indexer: EntryIndexer) -> None:
        """Index every entry not indexed yet, then derive each batch's unit with ``indexer``."""


class BlobStore(Protocol):
    """Small content-addressed blobs kept in the database (ADR 0007, ADR 0009)."""

    def blob(self, scope: str, stored: str) -> bytes | None:
        """The bytes the database keeps for ``stored`` in ``scope``, or None."""

    def drop_blob(self, scope: str, stored: str) -> bool:
        """Delete the database copy of ``stored`` unless a live object uses it."""


class ScopeContent(Protocol):
    """The stored bytes of one scope, each under its stored path (what the controller writes).

    Every implementation gives the crash-safety of ``storage/blobs.py``'s
    files: a write is durable and complete when it returns, or absent (never
    half-written); a read returns only bytes whose SHA-256 is the expected
    one; names are checked with ``storage/blob_names.py`` (INV-4) whatever
    the medium. Failures raise ``ConfinementError`` (a bad name, a symlink),
    ``PersistenceError`` (``not_found``, ``too_large``, ``exists``),
    ``IntegrityError`` (a digest mismatch) or ``StorageError``.
    """

    def read(self, rel: str, *, max_bytes: int, expected_hex: str) -> bytes:
        """The verified content at ``rel`` (IntegrityError on a digest mismatch)."""

    def digest(self, rel: str, *, max_bytes: int) -> str | None:
        """The SHA-256 hex of the content at ``rel``, or None when absent."""

    def write(self, rel: str, data: bytes, *, tag: str, exclusive: bool) -> None:
        """Durably store ``data`` at ``rel``, all or nothing (``exclusive``: never overwrite)."""

    def unlink(self, rel: str) -> bool:
        """Remove ``rel`` once retention tombstoned it; False when nothing was removed."""

    def sweep_temps(self, rel_dir: str, tag: str | None = None) -> int:
        """Remove what interrupted writes left in ``rel_dir``; return how many."""

    def close(self) -> None:
        """Release what the scope holds (a directory descriptor)."""


class PersistIndex(BlobStore, Protocol):
    """The persistence index, derived from the log (see ``storage/persist_index.py``)."""

    def pending(self) -> list[PendingDecision]:
        """Every ALLOW persist decision whose effect is not logged, in log order."""

    def repairable(self) -> list[PendingDecision]:
        """The pending decisions boot repair may close, in log order.

        On a store one process writes, every one; on a log several replicas
        share, those no live replica is carrying out (its owner is gone).
        """

    def pending_decision(self, decision_index: int) -> PendingDecision | None:
        """The pending decision at ``decision_index``, or None."""

    def latest(self, scope: str, name: str) -> ObjectRecord | None:
        """The newest live object named ``name`` in ``scope``."""

    def version(self, scope: str, name: str, version: int) -> ObjectRecord | None:
        """Live version ``version`` of ``name`` in ``scope``."""

    def by_stored(self, scope: str, stored: str) -> ObjectRecord | None:
        """A live object stored at ``stored`` in ``scope``."""

    def object_at(self, effect_index: int) -> ObjectRecord | None:
        """The live object written by the effect entry ``effect_index``."""

    def written_version(self, effect_index: int) -> int | None:
        """The version the effect entry ``effect_index`` wrote (None: no live object)."""

    def objects(self, scope: str, name: str | None = None) -> list[ObjectRecord]:
        """Live objects of ``scope`` (one name if given), by name, newest first."""

    def purges(self) -> list[PurgeRecord]:
        """Files whose tombstones are logged and that are not removed yet."""

    def purged(self, tombstone_index: int) -> None:
        """Drop ``tombstone_index`` from the purge queue."""

    def indexed_to(self) -> int:
        """The log size the index reflects."""


class RecordIndex(Protocol):
    """Which log entries are protocol records (derived from the log)."""

    def add(self, index: int, kind: str, receipt: bytes, *, indexed_to: int) -> None:
        """Index the record at ``index``, once, and raise the mark to ``indexed_to``."""

    def indexed_to(self) -> int:
        """Every record below this log index is indexed."""

    def set_indexed_to(self, index: int) -> None:
        """Raise the high-water mark (never lowers it)."""

    def records(self) -> list[tuple[int, str, bytes, bytes]]:
        """Every indexed record as ``(index, kind, payload from the log, receipt json)``."""


class StorageBackend(Protocol):
    """One database holding every role; what the composition root builds SOP from."""

    @property
    def log(self) -> EntryLog:
        """The tamper-evident log."""

    @property
    def log_store(self) -> AtomicLogStore:
        """The log's tables (what the log appends through)."""

    @property
    def capabilities(self) -> CapabilityStore:
        """Admitted capabilities and revocations."""

    @property
    def policies(self) -> PolicyStore:
        """Activated policy sets."""

    @property
    def verdicts(self) -> VerdictStore:
        """Write-once proof verdicts."""

    @property
    def persist(self) -> PersistIndex:
        """The persistence index (its small blobs included)."""

    @property
    def blobs(self) -> BlobStore:
        """The small blobs."""

    @property
    def records(self) -> RecordIndex:
        """The protocol record index."""

    def open_scope(self, name: str, root: str, base: Path) -> ScopeContent:
        """Where the bytes of scope ``name`` live: its files under ``base/root`` (SQLite,
        the embedded default), or rows of the database every replica shares (PostgreSQL).

        Raises:
            ConfinementError: ``root`` is malformed or passes through a symlink.
            StorageError: the scope's storage cannot be opened.
        """

    def set_entry_indexer(self, indexer: EntryIndexer) -> None:
        """Keep the persistence index in step with the log (see :meth:`AtomicLogStore.follow`)."""

    def self_test(self) -> None:
        """Check the backend's own integrity; raise StorageError if it fails."""

    def verify_state(self, log_size: int, config: str | None = None) -> None:
        """Check every derived table against what SOP sealed for a log of ``log_size`` entries,
        and ``config`` (a configuration digest, when given) against the accepted one.

        Raises:
            IntegrityError: derived state was edited, inserted, deleted or
                reordered behind SOP's back (the first table that differs
                named), or the configuration is not the one accepted.
        """

    def accept_config(self, config: str) -> None:
        """Make ``config`` the accepted configuration (the caller logged the change first)."""

    def close(self) -> None:
        """Release the backend's resources."""
