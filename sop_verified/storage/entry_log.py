"""The log role of every backend: a :class:`TransparencyLog` over the backend's tables.

:class:`StoreLog` opens the log once, with its checkpoint key
(:meth:`StoreLog.open`), or, explicitly and loudly, without one
(:meth:`StoreLog.unsafe_open_unsigned`); nothing opens it implicitly. Until
it is open every append or read through it raises
:class:`~sop_verified.errors.StorageError`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from sop_verified.errors import StorageError
from sop_verified.storage.ports import DEFAULT_ORIGIN
from sop_verified.tools.signed_note import Signer, Verifier
from sop_verified.tools.tlog import OnCheckpoint, TransparencyLog
from sop_verified.tools.tlog_store import LinkedPart, LogStore, Receipt

__all__ = ["StoreLog", "UnsignedLogWarning"]


class UnsignedLogWarning(UserWarning):
    """A log was opened without a checkpoint key: its checkpoints are not signed."""


class StoreLog:
    """The tamper-evident log of one backend (an :class:`~sop_verified.storage.ports.EntryLog`)."""

    def __init__(self, store: LogStore) -> None:
        """Append through ``store`` once opened.

        Args:
            store: The backend's log tables.
        """
        self._store = store
        self._tlog: TransparencyLog | None = None

    def open(
        self,
        *,
        signer: Signer,
        origin: str = DEFAULT_ORIGIN,
        trusted: tuple[Verifier, ...] = (),
        on_checkpoint: OnCheckpoint | None = None,
    ) -> TransparencyLog:
        """Open the log with its checkpoint key: read its tail and check the latest checkpoint.

        Args:
            signer: The checkpoint key; every batch is signed with it.
            origin: The checkpoint origin line (``origin`` in sop.toml).
            trusted: Further keys the latest checkpoint may be signed by.
            on_checkpoint: Told each checkpoint once its batch committed
                (nexus keeps the rollback anchor with it).

        Returns:
            The log, used by every append from now on.

        Raises:
            IntegrityError: the tail does not match the latest checkpoint.
            VerificationError: the latest checkpoint does not verify.
            StorageError: the database failed.
        """
        self._tlog = TransparencyLog(
            self._store, origin=origin, signer=signer, trusted=trusted, on_checkpoint=on_checkpoint
        )
        return self._tlog

    def unsafe_open_unsigned(
        self, *, origin: str = DEFAULT_ORIGIN, trusted: tuple[Verifier, ...] = ()
    ) -> TransparencyLog:
        """DANGER: open the log WITHOUT a checkpoint key; its batches are not signed.

        An unsigned log gives no checkpoint to hold a rollback or a rewrite
        against: use it only in tests, or to read and prove a log whose
        checkpoints are checked against ``trusted`` (an auditor's read-only
        view; once the log has signed checkpoints an unsigned one refuses to
        append). Every call warns (:class:`UnsignedLogWarning`).

        Args:
            origin: The checkpoint origin line.
            trusted: Keys the latest checkpoint may be signed by.

        Returns:
            The log, used by every append from now on.

        Raises:
            IntegrityError: the tail does not match the latest checkpoint.
            VerificationError: the latest checkpoint does not verify.
            StorageError: the database failed.
        """
        message = f"the log `{origin}` is opened WITHOUT a checkpoint key (unsigned)"
        warnings.warn(message, UnsignedLogWarning, stacklevel=2)
        self._tlog = TransparencyLog(self._store, origin=origin, signer=None, trusted=trusted)
        return self._tlog

    @property
    def opened(self) -> TransparencyLog:
        """The opened log.

        Raises:
            StorageError: the log was not opened.
        """
        if self._tlog is None:
            raise StorageError("the log is not open: open it with its checkpoint key first")
        return self._tlog

    def append(self, payload: bytes) -> int:
        """Durably append one entry (group commit); return its index.

        Raises:
            StorageError: the write failed, or the log is not open; nothing was acknowledged.
        """
        return self.opened.append(payload).index

    def append_receipt(self, payload: bytes) -> Receipt:
        """Durably append one entry (group commit); return its receipt.

        Raises:
            StorageError: the write failed, or the log is not open; nothing was acknowledged.
        """
        return self.opened.append(payload)

    def append_parts(
        self, parts: Sequence[LinkedPart]
    ) -> list[tuple[Receipt, Receipt | None] | Exception]:
        """Durably append several parts (an entry, maybe its linked entry) in one transaction
        (see :meth:`TransparencyLog.append_parts`).

        Raises:
            StorageError: the write failed, or the log is not open; nothing was acknowledged.
        """
        return self.opened.append_parts(parts)

    def log_size(self) -> int:
        """Number of entries in the log."""
        return self.opened.size

    def log_entries(self, start: int = 0, end: int | None = None) -> list[tuple[int, bytes, bytes]]:
        """Entries ``[start, end)`` as (index, leaf hash, payload)."""
        return self._store.read_entries(start, self.log_size() if end is None else end)

    def log_entries_containing(
        self, start: int, end: int, needles: Sequence[bytes]
    ) -> list[tuple[int, bytes, bytes]]:
        """Entries ``[start, end)`` whose payload holds one of ``needles`` (the store filters)."""
        return self._store.read_entries_containing(start, end, needles)

    def verify_tail(self) -> None:
        """Check the tail only: last leaf hash, stored nodes and the latest checkpoint.

        Raises:
            IntegrityError: the tail was tampered with.
            StorageError: the database failed, or the log is not open.
        """
        self.opened.verify_tail()
