"""A data directory's derived state, read for inspection without booting SOP or writing a byte.

Capabilities, revocations and the active policy set are read the way boot
trusts them (INV-11): against the state seal, which is bound to the log's size
and MACed under a key derived from the capability key, in the same snapshot
(:class:`~sop_verified.storage.state_view.StateView`). The SQLite database is
opened read-only (:class:`~sop_verified.storage.sqlite_state.SQLiteStateReader`);
a PostgreSQL schema is only queried. The capability key is read from the data
directory, as boot reads it: the seal cannot be checked without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from sop_verified.core.captree import CapabilityTree, load_tree
from sop_verified.errors import StorageError
from sop_verified.nexus.config import SOPConfig
from sop_verified.nexus.data_dir_log import DB_FILE
from sop_verified.storage.postgres import PostgresBackend
from sop_verified.storage.sqlite_state import SQLiteStateReader
from sop_verified.storage.state_view import StateView

__all__ = ["StateReader", "capability_tree", "open_state_reader"]


class StateReader(Protocol):
    """What an inspection asks of a store: a self-test and the checked view."""

    def self_test(self) -> None:
        """The backend's own check (SQLite's quick check, PostgreSQL's schema version)."""

    def read_state(self, log_size: int, config: str | None) -> StateView:
        """Check the state seal, then read the view, in one snapshot."""


@contextmanager
def open_state_reader(data_dir: Path, config: SOPConfig, state_key: bytes) -> Iterator[StateReader]:
    """The data directory's store, opened to read its derived state (closed on exit).

    Args:
        data_dir: the data directory.
        config: its configuration.
        state_key: the capability MAC key (the state keys derive from it).

    Raises:
        StorageError: the database cannot be opened.
    """
    if config.postgresql is None:
        reader = SQLiteStateReader(data_dir / DB_FILE, state_key)
        try:
            yield reader
        finally:
            reader.close()
        return
    where = config.postgresql
    store = PostgresBackend.open(
        where.dsn, schema=where.schema_name, state_key=state_key, migrate=False
    )
    try:
        yield store
    finally:
        store.close()


class _CheckedCapabilities:
    """A ``CapabilityStore`` over a checked view: it reads, and refuses every write."""

    def __init__(self, view: StateView) -> None:
        self._view = view

    def save_capability(self, cap_id: str, parent_id: str | None, claims: bytes) -> None:
        """Refuse: an inspection writes nothing.

        Raises:
            StorageError: always.
        """
        raise StorageError(f"capability `{cap_id}` not saved: the state is only read here")

    def load_capabilities(self) -> list[tuple[str, str | None, bytes]]:
        """The capabilities in the view, in admission order."""
        return list(self._view.capabilities)

    def save_revocation(self, cap_id: str, at: int) -> None:
        """Refuse: an inspection writes nothing.

        Raises:
            StorageError: always.
        """
        raise StorageError(f"revocation of `{cap_id}` not saved: the state is only read here")

    def load_revocations(self) -> dict[str, int]:
        """The revocations in the view."""
        return dict(self._view.revocations)


def capability_tree(view: StateView) -> CapabilityTree:
    """The derivation tree of the view's capabilities, checked as boot checks it.

    Raises:
        IntegrityError: the stored capabilities disagree with themselves (a child wider
            than its parent, an unknown parent, a revocation of an unknown capability).
    """
    return load_tree(_CheckedCapabilities(view))
