"""The state seal in SQLite: triggers on every derived table, one sealed row, the boot check.

Every derived table has three triggers (after insert, delete, update) that
pass the changed row to ``sop_seal``, a function SOP registers on its own
connections (:func:`register`); it adds the row's digest to the transaction's
pending seal. Just before ``COMMIT`` every write transaction of SOP's calls
:func:`close_seal`, which binds the log's size and MACs the seal once, so
every write SOP makes keeps the seal exact, whichever code path made it. A connection
without the functions (another process, the ``sqlite3`` shell) cannot write
a derived table at all while the triggers exist; one that drops them can,
but cannot update the seal to match (see :mod:`sop_verified.storage.state_seal`).
:func:`check_state` recomputes everything and names the first table that differs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

from sop_verified.errors import IntegrityError, StorageError
from sop_verified.storage.seal_layout import (
    KEYLESS,
    SEALED,
    check_config,
    check_sealed,
    config_bytes,
)
from sop_verified.storage.sqlite_db import connect_read_only
from sop_verified.storage.state_seal import RawText, Seal, SealKeeper

__all__ = [
    "KEYLESS",
    "SEALED",
    "SEAL_SCHEMA",
    "accept_config",
    "check_config",
    "check_state",
    "check_state_file",
    "close_seal",
    "register",
    "seal_if_empty",
]


def _row(table: str, ref: str, sign: int) -> str:
    cols = ", ".join(f"{ref}.{c}" for c in SEALED[table])
    update = "UPDATE state_seal SET seal = sop_seal"
    return f"{update}(seal, '{table}', {sign}, {cols}) WHERE id = 1;"


def _triggers(table: str) -> str:
    """The three triggers that keep ``table`` in the seal (insert, delete, update)."""
    out = []
    for op, body in (
        ("insert", _row(table, "NEW", 1)),
        ("delete", _row(table, "OLD", -1)),
        ("update", _row(table, "OLD", -1) + " " + _row(table, "NEW", 1)),
    ):
        out.append(
            f"CREATE TRIGGER IF NOT EXISTS {table}_seal_{op} AFTER {op.upper()} ON {table}\n"
            f"BEGIN {body} END;\n"
        )
    return "".join(out)


_SEAL_TABLE = """
CREATE TABLE IF NOT EXISTS state_seal (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seal BLOB NOT NULL
);
"""

SEAL_SCHEMA = _SEAL_TABLE + "".join(_triggers(t) for t in SEALED)
"""DDL of the seal row and its triggers (after every other table's DDL)."""

_TRIGGERS = frozenset(f"{t}_seal_{op}" for t in SEALED for op in ("insert", "delete", "update"))


def register(db: sqlite3.Connection, keeper: SealKeeper | None) -> None:
    """Give ``db`` the seal functions; without a keeper every sealed write is refused."""

    def seal_row(data: object, table: str, sign: int, *values: object) -> bytes:
        if keeper is None:
            raise StorageError(KEYLESS)
        return keeper.update(data, table, sign, values)

    def seal_close(data: object, old_size: int, new_size: int) -> bytes:
        if keeper is None:
            raise StorageError(KEYLESS)
        return keeper.close_pending(data, old_size, new_size)

    def seal_config(data: object, config: bytes) -> bytes:
        if keeper is None:
            raise StorageError(KEYLESS)
        return keeper.accept_config(data, config)

    db.create_function("sop_seal", -1, seal_row)
    db.create_function("sop_seal_close", 3, seal_close)
    db.create_function("sop_seal_config", 2, seal_config)


def close_seal(db: sqlite3.Connection, growth: tuple[int, int] | None) -> None:
    """MAC the transaction's seal, bound to the log's size, just before ``COMMIT``.

    Args:
        db: The connection, inside the write transaction.
        growth: ``(size before, size after)`` when the transaction appended log
            entries; None: it appended none (the size is read here).
    """
    if growth is None:
        ((size,),) = db.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM log_entries")
        growth = (int(size), int(size))
    db.execute("UPDATE state_seal SET seal = sop_seal_close(seal, ?, ?) WHERE id = 1", growth)


def seal_if_empty(db: sqlite3.Connection, keeper: SealKeeper) -> None:
    """Write the first seal of a database whose log and derived tables are all empty."""
    if db.execute("SELECT 1 FROM state_seal").fetchone() is not None:
        return
    if db.execute("SELECT 1 FROM log_entries LIMIT 1").fetchone() is not None:
        return  # a log without a seal: check_state refuses it (never sealed blind)
    for table in SEALED:
        if db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:  # noqa: S608
            return
    db.execute(
        "INSERT INTO state_seal (id, seal) VALUES (1, ?)",
        (keeper.close(Seal.empty(len(SEALED))),),
    )


def _rows(db: sqlite3.Connection, table: str) -> Iterator[tuple[object, ...]]:
    cols = ", ".join(SEALED[table])
    yield from db.execute(f"SELECT {cols} FROM {table}")  # noqa: S608 — constant names


def check_state(
    db: sqlite3.Connection, keeper: SealKeeper, log_size: int, config: str | None = None
) -> None:
    """Check every derived table against the seal, and the seal against ``log_size``.

    Args:
        db: A connection (read only is enough).
        keeper: The keeper holding the state keys.
        log_size: The log's size, authenticated by its signed checkpoint.
        config: The configuration's digest (``sha256:<hex>``) to hold against
            the one the seal accepted; None: not checked.

    Raises:
        IntegrityError: a trigger is missing, the seal is missing, forged or
            for another log size, a table differs from what was sealed, or
            the configuration is not the one accepted.
    """
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    missing = sorted(_TRIGGERS - names)
    if missing:  # spec: INV-11 — without its triggers a write would go unsealed
        raise IntegrityError(
            f"the state seal's trigger `{missing[0]}` is missing"
            f" ({len(missing)} of {len(_TRIGGERS)}): someone dropped it"
        )
    factory = db.text_factory
    db.text_factory = RawText  # read TEXT as stored, valid UTF-8 or not
    try:
        row = db.execute("SELECT seal FROM state_seal WHERE id = 1").fetchone()
        rows = {t: _rows(db, t) for t in SEALED}
        check_sealed(keeper, None if row is None else row[0], log_size, rows, config)
    finally:
        db.text_factory = factory


def accept_config(db: sqlite3.Connection, config: str) -> None:
    """Make ``config`` the accepted configuration in the seal (inside the caller's transaction)."""
    db.execute(
        "UPDATE state_seal SET seal = sop_seal_config(seal, ?) WHERE id = 1",
        (config_bytes(config),),
    )


def check_state_file(path: Path, master: bytes, log_size: int, config: str | None = None) -> int:
    """:func:`check_state` on the database at ``path``, opened read-only (an audit writes nothing).

    Args:
        path: The database file.
        master: The capability MAC key the state keys derive from.
        log_size: The log's size, as the audit verified it.

    Returns:
        The number of derived tables checked.

    Raises:
        IntegrityError: as :func:`check_state`.
        StorageError: the database cannot be opened or read.
    """
    db = connect_read_only(path, "to check its derived state")
    try:
        check_state(db, SealKeeper(master, tuple(SEALED)), log_size, config)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot read the derived state of `{path}`: {exc}") from exc
    finally:
        db.close()
    return len(SEALED)
