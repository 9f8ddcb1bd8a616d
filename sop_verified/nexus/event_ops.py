"""``sop events tail``'s side of nexus: a data directory's events, read without booting SOP.

The log is read through :class:`~sop_verified.nexus.data_dir_log.DataDirLog`
(read-only: nothing in the data directory changes; the latest checkpoint
verified against the public checkpoint key), and every entry proved included
under it before it becomes an event
(:class:`~sop_verified.events.source.LogEventSource`). A follower
(:meth:`DataDirEvents.refresh`) opens the log again to see new entries, and
refuses a log that no longer extends the checkpoint it last verified: a log
cut back or replaced under a running ``tail --follow`` is an
:class:`~sop_verified.errors.IntegrityError`, never a silent restart.
"""

from __future__ import annotations

from pathlib import Path

from sop_verified.events.model import Event
from sop_verified.events.source import LogEventSource
from sop_verified.nexus.config import SOPConfig
from sop_verified.nexus.data_dir_log import DB_FILE, DataDirLog
from sop_verified.nexus.telemetry_config import telemetry_boundary

__all__ = ["DB_FILE", "DataDirEvents"]


class DataDirEvents:
    """The events of a data directory's log, read-only (an ``EventSource``, refreshed by hand).

    Use it as a context manager; :meth:`refresh` before the first read.
    """

    def __init__(self, data_dir: Path, *, dsn: str | None = None) -> None:
        """Read ``data_dir``'s configuration and telemetry boundary; nothing is opened yet.

        Args:
            data_dir: the data directory.
            dsn: another address for its PostgreSQL database (as ``sop serve --dsn``).

        Raises:
            ConfigError: no configuration, or ``[telemetry] mode = "hash"`` without its key.
        """
        self._log = DataDirLog(data_dir, dsn=dsn)
        self._boundary = telemetry_boundary(data_dir, self._log.config.telemetry)
        self._source = LogEventSource(lambda: self._log.log, self._boundary)

    def __enter__(self) -> DataDirEvents:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database connections."""
        self._log.close()

    @property
    def config(self) -> SOPConfig:
        """The data directory's configuration."""
        return self._log.config

    @property
    def origin(self) -> str:
        """The log's origin."""
        return self._log.origin

    def refresh(self) -> int:
        """Open the log again, as it is now; return how many events there are.

        Returns:
            The events of the entries the latest checkpoint covers and of the
            checkpoints up to it (:meth:`signed_size` is the entries alone).

        Raises:
            IntegrityError: the stored tail does not match the latest checkpoint,
                or the log does not extend the checkpoint verified before.
            VerificationError: the latest checkpoint does not verify.
            ConfigError: the public checkpoint key cannot be read.
            StorageError: the database cannot be read.
        """
        self._log.refresh()
        return self._source.size()

    def size(self) -> int:
        """The events of what the checkpoint verified at the last :meth:`refresh` covers."""
        return self._source.size()

    def position_of(self, event_id: str) -> int | None:
        """The position of the event ``event_id`` names (see :class:`LogEventSource`)."""
        return self._source.position_of(event_id)

    def entry_position(self, index: int) -> int:
        """The position of entry ``index``'s event."""
        return self._source.entry_position(index)

    def signed_size(self) -> int:
        """The entries the checkpoint verified at the last :meth:`refresh` covers."""
        checkpoint = self._log.log.checkpoint
        return 0 if checkpoint is None else checkpoint.size

    def read(self, start: int, end: int) -> list[Event]:
        """The events at positions ``[start, end)`` (see :class:`LogEventSource`).

        Raises:
            IntegrityError: an entry does not verify; no event is made of it.
            StorageError: the database cannot be read.
        """
        return self._source.read(start, end)
