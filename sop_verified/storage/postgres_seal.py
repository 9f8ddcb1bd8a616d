"""The state seal in PostgreSQL: triggers journal every derived row, SOP seals at commit.

The seal is the one of :mod:`sop_verified.storage.state_seal` over the tables
of :data:`~sop_verified.storage.seal_layout.SEALED`, kept the way the SQLite
backend keeps it (:mod:`sop_verified.storage.sqlite_seal`), with the work split
differently because PostgreSQL cannot call into SOP's process:

- every sealed table has three statement triggers (after insert, delete,
  update, named as SQLite's) that copy the changed rows, as text, into
  ``pg_temp.sop_seal_journal``, a temporary table that only SOP's own
  sessions create (:func:`start_journal`) and that empties at every commit;
- just before ``COMMIT`` every write transaction of SOP's calls
  :func:`close_seal`, which takes the journal, locks the seal row, adds each
  row's keyed digest through the :class:`~sop_verified.storage.state_seal.SealKeeper`,
  binds the log's size and MACs the seal once.

So every write SOP makes keeps the seal exact, whichever code path made it. A
session without the journal (``psql``, another program) cannot write a
derived table while the triggers exist; one that drops or disables them, or
creates its own journal, can, but cannot update the seal to match.
:func:`check_state` checks the triggers are there and enabled, recomputes
everything in one snapshot and names the first table that differs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import sql

from sop_verified.errors import IntegrityError, StorageError
from sop_verified.storage.seal_layout import KEYLESS, SEALED, check_sealed, config_bytes
from sop_verified.storage.state_seal import Seal, SealKeeper

__all__ = [
    "SEAL_DDL",
    "Decoders",
    "accept_config",
    "check_state",
    "close_seal",
    "decoders",
    "explain",
    "seal_if_empty",
    "start_journal",
]

Decoders = dict[str, tuple[Callable[[str | None], object], ...]]
"""Per sealed table, per column, how to read a journalled text value back as stored."""

_JOURNAL = "sop_seal_journal"
_OPS = ("insert", "delete", "update")
_TAKE_JOURNAL = "DELETE FROM pg_temp.sop_seal_journal RETURNING tbl, sign, vals"


def _copy(table: str, rows: str, sign: int) -> str:
    values = ", ".join(f'r."{c}"::text' for c in SEALED[table])
    return (
        f"INSERT INTO pg_temp.{_JOURNAL} (tbl, sign, vals)"  # noqa: S608 - constant names
        f" SELECT '{table}', {sign}, ARRAY[{values}]::text[] FROM {rows} r;"
    )


def _triggers(table: str) -> str:
    """The three triggers (and their functions) that journal ``table``'s changed rows."""
    out = []
    for op, refs, body in (
        ("insert", "NEW TABLE AS new_rows", _copy(table, "new_rows", 1)),
        ("delete", "OLD TABLE AS old_rows", _copy(table, "old_rows", -1)),
        (
            "update",
            "OLD TABLE AS old_rows NEW TABLE AS new_rows",
            _copy(table, "old_rows", -1) + " " + _copy(table, "new_rows", 1),
        ),
    ):
        name = f"{table}_seal_{op}"
        out.append(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            f"BEGIN {body} RETURN NULL; END $$;\n"
            f"CREATE TRIGGER {name} AFTER {op.upper()} ON {table} REFERENCING {refs}\n"
            f"    FOR EACH STATEMENT EXECUTE FUNCTION {name}();\n"
        )
    return "".join(out)


SEAL_DDL = """
CREATE TABLE state_seal (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    seal BYTEA NOT NULL
);
""" + "".join(_triggers(t) for t in SEALED)
"""DDL of the seal row and the journalling triggers (after every sealed table's DDL)."""

_TRIGGERS = frozenset(f"{t}_seal_{op}" for t in SEALED for op in _OPS)


def start_journal(conn: psycopg.Connection[Any]) -> None:
    """Give a new session of SOP's its seal journal (an autocommit connection)."""
    conn.execute(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {_JOURNAL}"
        " (tbl TEXT NOT NULL, sign INTEGER NOT NULL, vals TEXT[] NOT NULL)"
        " ON COMMIT DELETE ROWS"
    )


def explain(message: str) -> str | None:
    """Why a write failed when the driver only says the journal is missing: no state key."""
    return KEYLESS if _JOURNAL in message else None


def _int(value: str | None) -> object:
    return None if value is None else int(value)


def _bytea(value: str | None) -> object:
    return None if value is None else bytes.fromhex(value[2:])


def _text(value: str | None) -> object:
    return value


def decoders(conn: psycopg.Connection[Any]) -> Decoders:
    """How to read each sealed column's journalled text back, from the columns' types."""
    rows = conn.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = current_schema()"
    ).fetchall()
    types = {(str(t), str(c)): str(d) for t, c, d in rows}
    pick = {"bigint": _int, "integer": _int, "smallint": _int, "bytea": _bytea}
    return {
        table: tuple(pick.get(types.get((table, c), ""), _text) for c in columns)
        for table, columns in SEALED.items()
    }


def _values(decode: Decoders, table: str, vals: Sequence[str | None]) -> tuple[object, ...]:
    return tuple(f(v) for f, v in zip(decode[table], vals, strict=True))


def close_seal(
    cur: psycopg.Cursor[Any],
    keeper: SealKeeper,
    decode: Decoders,
    growth: tuple[int, int] | None,
) -> None:
    """Seal the transaction's journalled rows, bound to the log's size, just before ``COMMIT``.

    Args:
        cur: A cursor inside the write transaction.
        keeper: The keeper holding the state keys.
        decode: How to read the journal's values (:func:`decoders`).
        growth: ``(size before, size after)`` when the transaction appended log
            entries; None: it appended none (the size is read here).

    Raises:
        StorageError: the seal does not open, or is not bound to the log's size
            before this write (the keeper's reason); nothing is committed.
    """
    changes = cur.execute(_TAKE_JOURNAL).fetchall()
    row = cur.execute("SELECT seal FROM state_seal WHERE id = 1 FOR UPDATE").fetchone()
    if row is None:
        return  # no seal: check_state refuses the store (it is never sealed blind)
    if growth is None:
        (size,) = cur.execute("SELECT size FROM log_head WHERE id = 1").fetchone() or (0,)
        growth = (int(size), int(size))
    data = row[0]
    try:
        for table, sign, vals in changes:
            data = keeper.update(data, table, sign, _values(decode, table, vals))
        data = keeper.close_pending(data, *growth)  # spec: INV-11 — one MAC per transaction
    except IntegrityError as exc:
        raise StorageError(f"postgresql write failed: {exc}") from None
    cur.execute("UPDATE state_seal SET seal = %s WHERE id = 1", (data,))


def seal_if_empty(cur: psycopg.Cursor[Any], keeper: SealKeeper) -> None:
    """Write the first seal of a schema whose log and derived tables are all empty."""
    if cur.execute("SELECT 1 FROM state_seal").fetchone() is not None:
        return
    if cur.execute("SELECT 1 FROM log_entries LIMIT 1").fetchone() is not None:
        return  # a log without a seal: check_state refuses it (never sealed blind)
    for table in SEALED:
        if cur.execute(
            sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier(table))
        ).fetchone():
            return
    cur.execute(  # two replicas opening a new schema together write the same first seal
        "INSERT INTO state_seal (id, seal) VALUES (1, %s) ON CONFLICT (id) DO NOTHING",
        (keeper.close(Seal.empty(len(SEALED))),),
    )


def accept_config(cur: psycopg.Cursor[Any], keeper: SealKeeper | None, config: str) -> None:
    """Make ``config`` the accepted configuration in the seal (inside the caller's transaction).

    Raises:
        IntegrityError: ``config`` is not a configuration digest.
        StorageError: no state key, or the seal does not open.
    """
    digest = config_bytes(config)
    if keeper is None:
        raise StorageError(f"postgresql write failed: {KEYLESS}")
    row = cur.execute("SELECT seal FROM state_seal WHERE id = 1 FOR UPDATE").fetchone()
    if row is None:
        return
    try:
        pending = keeper.accept_config(row[0], digest)
    except IntegrityError as exc:
        raise StorageError(f"postgresql write failed: {exc}") from None
    cur.execute("UPDATE state_seal SET seal = %s WHERE id = 1", (pending,))


def _rows(conn: psycopg.Connection[Any], table: str) -> Iterator[tuple[object, ...]]:
    query = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in SEALED[table]), sql.Identifier(table)
    )
    with conn.cursor(name=f"sop_seal_{table}") as cur:
        cur.itersize = 5000
        cur.execute(query)
        yield from cur


def check_state(
    conn: psycopg.Connection[Any], keeper: SealKeeper, log_size: int, config: str | None = None
) -> None:
    """Check every derived table against the seal, and the seal against ``log_size``.

    Args:
        conn: A connection inside a read-only ``REPEATABLE READ`` transaction
            (one snapshot of the seal and every table).
        keeper: The keeper holding the state keys.
        log_size: The log's size, authenticated by its signed checkpoint. The
            seal must be for the head row's size in the same snapshot when other
            replicas have appended since (a seal for less than ``log_size`` is
            always refused).
        config: The configuration's digest to hold against the accepted one
            (None: not checked).

    Raises:
        IntegrityError: a trigger is missing or disabled, the seal is missing,
            forged or for another log size, a table differs from what was
            sealed, or the configuration is not the one accepted.
    """
    found = conn.execute(
        "SELECT t.tgname, t.tgenabled FROM pg_catalog.pg_trigger t"
        " JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = current_schema() AND NOT t.tgisinternal"
    ).fetchall()
    enabled = {str(name) for name, state in found if str(state) in ("O", "A")}
    missing = sorted(_TRIGGERS - enabled)
    if missing:  # spec: INV-11 — without its triggers a write would go unsealed
        raise IntegrityError(
            f"the state seal's trigger `{missing[0]}` is missing or disabled"
            f" ({len(missing)} of {len(_TRIGGERS)}): someone dropped or disabled it"
        )
    row = conn.execute("SELECT seal FROM state_seal WHERE id = 1").fetchone()
    rows = {t: _rows(conn, t) for t in SEALED}
    head = conn.execute("SELECT size FROM log_head WHERE id = 1").fetchone()
    # Other replicas append while this one checks: the seal is the one of the head in this
    # snapshot, which may be past the size the checking log authenticated, never before it.
    sealed_at = log_size if head is None else max(log_size, int(head[0]))
    check_sealed(keeper, None if row is None else row[0], sealed_at, rows, config)
