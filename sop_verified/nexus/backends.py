"""Which storage backend a data directory uses: SQLite in it, or a shared PostgreSQL schema.

``storage = "sqlite"`` (the default) keeps everything in ``<data>/sop.db``.
``storage = "postgresql"`` with a ``[postgresql]`` table (``dsn``, ``schema``)
keeps it in one schema of a PostgreSQL database that several SOP replicas share
(ADR 0017). The data directory still holds what is the replica's own: the
keys, the configuration, the rollback anchor, the server's lock and socket.

The schema is created and migrated by ``sop init`` only; a boot checks its
version and refuses one it does not know (:mod:`sop_verified.storage.postgres_schema`).
"""

from __future__ import annotations

from pathlib import Path

from sop_verified.errors import ConfigError
from sop_verified.nexus.config import SOPConfig
from sop_verified.storage.ports import StorageBackend
from sop_verified.storage.postgres import PostgresBackend
from sop_verified.storage.postgres_db import redact_dsn
from sop_verified.storage.sqlite import SQLiteBackend

__all__ = ["DB_NAME", "open_backend", "storage_where"]

DB_NAME = "sop.db"
"""The SQLite database's file name in the data directory."""


def open_backend(
    data_dir: Path,
    config: SOPConfig,
    *,
    state_key: bytes | None,
    dsn: str | None = None,
    migrate: bool = False,
    read_only: bool = False,
) -> StorageBackend:
    """Open the backend ``config`` names.

    Args:
        data_dir: the data directory (SQLite's file lives in it).
        config: the validated configuration.
        state_key: the key derived state is sealed under (INV-11).
        dsn: another address for the configured PostgreSQL database (``sop serve --dsn``).
        migrate: create or migrate the PostgreSQL schema (``sop init`` only).
        read_only: open the store read-only: nothing in the data directory changes and
            every write is refused (SQLite only, for now).

    Raises:
        ConfigError: ``dsn`` given for a SQLite data directory, or ``read_only`` for a
            PostgreSQL one.
        StorageError: the database cannot be opened, or its schema version is unknown.
    """
    if config.postgresql is None:
        if dsn is not None:
            raise ConfigError(
                f"`{data_dir}` keeps its state in SQLite; `--dsn` is for a data directory"
                " made with `sop init --dsn DSN`",
                accepted="no `--dsn`, or a PostgreSQL data directory",
            )
        return SQLiteBackend.open(data_dir / DB_NAME, state_key=state_key, read_only=read_only)
    if read_only:
        raise ConfigError(
            f"`{data_dir}` keeps its state in PostgreSQL; opening it read-only (a dry run)"
            " is built for SQLite data directories only",
            accepted="a SQLite data directory, or a decision through the bridge plane",
        )
    return PostgresBackend.open(
        dsn or config.postgresql.dsn,
        schema=config.postgresql.schema_name,
        state_key=state_key,
        migrate=migrate,
    )


def storage_where(config: SOPConfig, dsn: str | None = None) -> str:
    """Where the state is, for people: the SQLite file or the redacted DSN and schema."""
    if config.postgresql is None:
        return f"sqlite `{DB_NAME}`"
    shown = redact_dsn(dsn or config.postgresql.dsn)
    return f"postgresql `{shown}`, schema `{config.postgresql.schema_name}`"
