"""The state seal on PostgreSQL (INV-11): every derived table, each kind of tampering, is caught.

As tests/storage/test_state_seal.py does for SQLite: SOP writes three rows
into every sealed table through its own sessions (so the triggers journal
them and the seal is kept); the attacker, a superuser session without SOP's
keys, switches the triggers off for himself (``session_replication_role``)
or drops them, and edits, inserts, deletes or reorders rows, or writes the
seal itself. :meth:`PostgresBackend.verify_state` must name the table every
time, and must pass on SOP's own writes. The matrix runs each tampering in a
transaction of the attacker's that is checked, then rolled back, so one
sealed schema serves every case.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from pg_server import DSN, connect, drop_schema, new_schema_name
from psycopg import sql

from sop_verified.errors import IntegrityError, StorageError
from sop_verified.storage.entry_log import UnsignedLogWarning
from sop_verified.storage.postgres import PostgresBackend
from sop_verified.storage.postgres_seal import check_state
from sop_verified.storage.seal_layout import SEALED
from sop_verified.storage.state_seal import SealKeeper

KEY = bytes(range(32))
_INTS = {
    "seq",
    "at",
    "activated_at",
    "value",
    "decision_index",
    "effect_index",
    "size",
    "time",
    "version",
    "tombstone_index",
    "latest",
    "log_index",
}
_BLOBS = {"claims", "document", "record", "request", "data", "receipt"}

Conn = psycopg.Connection[Any]


def _value(column: str, n: int) -> object:
    if column in _INTS:
        return 100 + n
    if column in _BLOBS:
        return f"{column}-{n}".encode()
    return f"{column}-{n}"


def _insert_sql(table: str) -> sql.Composed:
    columns = SEALED[table]
    return sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
    )


def _seal_rows(backend: PostgresBackend) -> None:
    """Three rows in every sealed table, written through SOP's own session (so sealed)."""
    with backend._db.tx() as cur:
        for table, columns in SEALED.items():
            for n in range(3):
                cur.execute(_insert_sql(table), [_value(c, n) for c in columns])


def _open(schema: str, state_key: bytes | None = KEY) -> PostgresBackend:
    return PostgresBackend.open(DSN, schema=schema, state_key=state_key)


def _sealed_schema() -> str:
    schema = new_schema_name()
    try:
        store = _open(schema)
        try:
            with pytest.warns(UnsignedLogWarning):
                store.log.unsafe_open_unsigned()
            for i in range(4):
                store.log.append(b'{"type":"test","i":%d}' % i)
            _seal_rows(store)
            store.verify_state(4)  # SOP's own writes keep the seal exact
        finally:
            store.close()
    except BaseException:
        drop_schema(schema)  # a fixture that failed leaves nothing behind
        raise
    return schema


@pytest.fixture(scope="module")
def shared() -> Iterator[str]:
    """One sealed schema for the tampering matrix (each case rolls its tampering back)."""
    schema = _sealed_schema()
    yield schema
    drop_schema(schema)


@pytest.fixture
def sealed() -> Iterator[str]:
    """A sealed schema of the test's own (its tampering is committed)."""
    schema = _sealed_schema()
    yield schema
    drop_schema(schema)


@pytest.fixture
def attacker_in() -> Iterator[Callable[[str], Conn]]:
    """A plain superuser session in a schema, with the triggers off for it alone."""
    opened: list[Conn] = []

    def open_in(schema: str) -> Conn:
        conn = connect()
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        conn.execute("SET session_replication_role = replica")  # no trigger fires for him
        opened.append(conn)
        return conn

    yield open_in
    for conn in opened:
        conn.close()


def _first(conn: Conn, table: str) -> sql.Composed:
    key = sql.Identifier(SEALED[table][0])
    return sql.SQL("(SELECT ctid FROM {} ORDER BY {} LIMIT 1)").format(sql.Identifier(table), key)


def _edit(conn: Conn, table: str) -> None:
    column = SEALED[table][-1]
    new = 999 if column in _INTS else (b"forged" if column in _BLOBS else "forged")
    conn.execute(
        sql.SQL("UPDATE {} SET {} = %s WHERE ctid = {}").format(
            sql.Identifier(table), sql.Identifier(column), _first(conn, table)
        ),
        (new,),
    )


def _insert(conn: Conn, table: str) -> None:
    conn.execute(_insert_sql(table), [_value(c, 7) for c in SEALED[table]])


def _delete(conn: Conn, table: str) -> None:
    conn.execute(
        sql.SQL("DELETE FROM {} WHERE ctid = {}").format(sql.Identifier(table), _first(conn, table))
    )


def _reorder(conn: Conn, table: str) -> None:
    """Swap the two first rows' contents (every column but the first, the key)."""
    columns = SEALED[table]
    a, b = conn.execute(
        sql.SQL("SELECT {} FROM {} ORDER BY {} LIMIT 2").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.Identifier(table),
            sql.Identifier(columns[0]),
        )
    ).fetchall()
    conn.execute(
        sql.SQL("DELETE FROM {} WHERE {} IN (%s, %s)").format(
            sql.Identifier(table), sql.Identifier(columns[0])
        ),
        (a[0], b[0]),
    )
    for row in ((a[0], *b[1:]), (b[0], *a[1:])):
        conn.execute(_insert_sql(table), row)


TAMPERINGS: dict[str, Callable[[Conn, str], None]] = {
    "edit": _edit,
    "insert": _insert,
    "delete": _delete,
    "reorder": _reorder,
}


@pytest.mark.parametrize("kind", TAMPERINGS)
@pytest.mark.parametrize("table", SEALED)
def test_every_tampering_of_every_derived_table_is_named(
    shared: str, attacker_in: Callable[[str], Conn], table: str, kind: str
) -> None:
    conn = attacker_in(shared)
    keeper = SealKeeper(KEY, tuple(SEALED))
    with conn.transaction(force_rollback=True):
        check_state(conn, keeper, 4)  # as sealed
        TAMPERINGS[kind](conn, table)
        with pytest.raises(IntegrityError, match=f"derived table `{table}` does not match"):
            check_state(conn, keeper, 4)


def test_a_committed_edit_is_named_at_the_next_boot(
    sealed: str, attacker_in: Callable[[str], Conn]
) -> None:
    _edit(attacker_in(sealed), "revocations")
    store = _open(sealed)
    try:
        with pytest.raises(IntegrityError, match="derived table `revocations` does not match"):
            store.verify_state(4)
    finally:
        store.close()


def test_the_seal_is_bound_to_the_log_size(shared: str) -> None:
    store = _open(shared)
    try:
        with pytest.raises(IntegrityError, match="seal is for a log of `4` entries but the log"):
            store.verify_state(5)
    finally:
        store.close()


def test_a_log_another_replica_grew_meanwhile_is_checked_at_its_head(sealed: str) -> None:
    store, other = _open(sealed), _open(sealed)
    try:
        with pytest.warns(UnsignedLogWarning):
            other.log.unsafe_open_unsigned()
        other.log.append(b'{"type":"test","i":4}')  # after `store` read the log at 4 entries
        store.verify_state(4)  # a replica booting while the others decide
        with pytest.raises(IntegrityError, match="seal is for a log of `5` entries but the log"):
            store.verify_state(6)  # never a seal for less than the log holds
    finally:
        other.close()
        store.close()


def test_an_older_seal_put_back_is_refused_and_never_carried_forward(
    sealed: str, attacker_in: Callable[[str], Conn]
) -> None:
    attacker = attacker_in(sealed)
    ((old,),) = attacker.execute("SELECT seal FROM state_seal").fetchall()
    store = _open(sealed)
    try:
        with pytest.warns(UnsignedLogWarning):
            store.log.unsafe_open_unsigned()
        store.log.append(b'{"type":"test","i":4}')
        with store._db.tx() as cur:
            cur.execute("DELETE FROM revocations WHERE id = 'id-0'")  # SOP's own change
        attacker.execute("INSERT INTO revocations (id, at) VALUES ('id-0', 100)")  # undo it, and
        attacker.execute("UPDATE state_seal SET seal = %s", (old,))  # put the old seal back
        with pytest.raises(IntegrityError, match="seal is for a log of `4` entries but the log"):
            store.verify_state(5)
        with pytest.raises(StorageError, match="the log held `5` before this write: the seal was"):
            store.log.append(b'{"type":"test","i":5}')  # SOP never re-seals the old bytes forward
    finally:
        store.close()


def test_a_forged_seal_is_refused_and_blocks_every_write(
    sealed: str, attacker_in: Callable[[str], Conn]
) -> None:
    attacker = attacker_in(sealed)
    ((seal,),) = attacker.execute("SELECT seal FROM state_seal").fetchall()
    forged = seal[:20] + bytes([seal[20] ^ 1]) + seal[21:]
    attacker.execute("UPDATE state_seal SET seal = %s", (forged,))
    store = _open(sealed)
    try:
        with pytest.raises(IntegrityError, match="MAC does not verify"):
            store.verify_state(4)
        with pytest.raises(StorageError, match="MAC does not verify"):
            store.capabilities.save_revocation("cap-x", 1)
        assert "cap-x" not in store.capabilities.load_revocations()  # nothing was kept
    finally:
        store.close()


def test_a_deleted_seal_is_refused(sealed: str, attacker_in: Callable[[str], Conn]) -> None:
    attacker_in(sealed).execute("DELETE FROM state_seal")
    store = _open(sealed)  # a store with rows is never sealed blind at open
    try:
        with pytest.raises(IntegrityError, match="derived state has no seal"):
            store.verify_state(4)
    finally:
        store.close()


@pytest.mark.parametrize(
    "how", ["DROP TRIGGER {t} ON revocations", "ALTER TABLE revocations DISABLE TRIGGER {t}"]
)
def test_a_dropped_or_disabled_trigger_is_named(
    shared: str, attacker_in: Callable[[str], Conn], how: str
) -> None:
    conn = attacker_in(shared)
    with conn.transaction(force_rollback=True):
        conn.execute(how.format(t="revocations_seal_delete"))
        with pytest.raises(IntegrityError, match="trigger `revocations_seal_delete` is missing or"):
            check_state(conn, SealKeeper(KEY, tuple(SEALED)), 4)


def test_a_store_opened_without_the_key_cannot_write_sealed_state(shared: str) -> None:
    keyless = _open(shared, state_key=None)
    try:
        with pytest.raises(StorageError, match="open the store with SOP's keys to write"):
            keyless.capabilities.save_revocation("cap-x", 1)
        with pytest.raises(IntegrityError, match="without SOP's state key"):
            keyless.verify_state(4)
    finally:
        keyless.close()


def test_another_key_does_not_open_the_seal(shared: str) -> None:
    other = _open(shared, state_key=bytes(32))
    try:
        with pytest.raises(IntegrityError, match="MAC does not verify"):
            other.verify_state(4)
    finally:
        other.close()


def test_a_row_planted_before_sops_write_makes_that_write_fail(
    sealed: str, attacker_in: Callable[[str], Conn]
) -> None:
    """Planted unsealed, then deleted after SOP's write was ignored: the seal would never know.

    So SOP's sealed inserts are strict: the plant makes the real write fail loudly.
    """
    attacker_in(sealed).execute("INSERT INTO revocations (id, at) VALUES ('cap-x', 1)")
    store = _open(sealed)
    try:
        with pytest.raises(StorageError, match="duplicate key value violates unique constraint"):
            store.capabilities.save_revocation("cap-x", 5)
    finally:
        store.close()
