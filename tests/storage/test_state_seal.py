"""The state seal (INV-11): every derived table, each kind of tampering, is caught.

SOP writes rows into every sealed table (through its own connection, so the
triggers keep the seal); the attacker then opens the file with plain
``sqlite3``, drops the triggers and edits, inserts, deletes or reorders rows,
or writes the seal itself. :meth:`SQLiteBackend.verify_state` must name the
table every time, and must pass on SOP's own writes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from attacker import attacker_db

from sop_verified.errors import IntegrityError, StorageError
from sop_verified.storage.entry_log import UnsignedLogWarning
from sop_verified.storage.sqlite import SQLiteBackend
from sop_verified.storage.sqlite_seal import SEALED
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


def _value(column: str, n: int) -> object:
    if column in _INTS:
        return 100 + n
    if column in _BLOBS:
        return f"{column}-{n}".encode()
    return f"{column}-{n}"


@pytest.fixture
def sealed(tmp_path: Path) -> Iterator[tuple[SQLiteBackend, Path]]:
    """A store whose every derived table holds three rows SOP wrote, and a 4-entry log."""
    path = tmp_path / "sop.db"
    store = SQLiteBackend.open(path, state_key=KEY)
    with pytest.warns(UnsignedLogWarning):
        store.log.unsafe_open_unsigned()
    for i in range(4):
        store.log.append(b'{"type":"test","i":%d}' % i)
    with store._db.tx() as db:
        for table, columns in SEALED.items():
            for n in range(3):
                db.execute(
                    f"INSERT INTO {table} ({', '.join(columns)})"
                    f" VALUES ({', '.join('?' * len(columns))})",
                    [_value(c, n) for c in columns],
                )
    store.verify_state(4)  # SOP's own writes keep the seal exact
    yield store, path
    store.close()


def _edit(db: sqlite3.Connection, table: str) -> None:
    column = SEALED[table][-1]
    new = 999 if column in _INTS else (b"forged" if column in _BLOBS else "forged")
    db.execute(
        f"UPDATE {table} SET {column} = ? WHERE rowid = (SELECT MIN(rowid) FROM {table})", (new,)
    )


def _insert(db: sqlite3.Connection, table: str) -> None:
    columns = SEALED[table]
    db.execute(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        [_value(c, 7) for c in columns],
    )


def _delete(db: sqlite3.Connection, table: str) -> None:
    db.execute(f"DELETE FROM {table} WHERE rowid = (SELECT MAX(rowid) FROM {table})")


def _reorder(db: sqlite3.Connection, table: str) -> None:
    """Swap the two first rows' contents (every column but the first, the key)."""
    columns = SEALED[table]
    a, b = db.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY rowid LIMIT 2")
    db.execute(f"DELETE FROM {table} WHERE {columns[0]} IN (?, ?)", (a[0], b[0]))
    for row in ((a[0], *b[1:]), (b[0], *a[1:])):
        db.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
            row,
        )


TAMPERINGS: dict[str, Callable[[sqlite3.Connection, str], None]] = {
    "edit": _edit,
    "insert": _insert,
    "delete": _delete,
    "reorder": _reorder,
}


@pytest.mark.parametrize("kind", TAMPERINGS)
@pytest.mark.parametrize("table", SEALED)
def test_every_tampering_of_every_derived_table_is_named(
    sealed: tuple[SQLiteBackend, Path], table: str, kind: str
) -> None:
    store, path = sealed
    store.close()
    db = attacker_db(path)
    TAMPERINGS[kind](db, table)
    db.close()
    reopened = SQLiteBackend.open(path, state_key=KEY)  # as at boot: the triggers are back
    try:
        with pytest.raises(IntegrityError, match=f"derived table `{table}` does not match"):
            reopened.verify_state(4)
    finally:
        reopened.close()


def test_the_seal_is_bound_to_the_log_size(sealed: tuple[SQLiteBackend, Path]) -> None:
    store, _ = sealed
    with pytest.raises(IntegrityError, match="seal is for a log of `4` entries but the log holds"):
        store.verify_state(5)


def test_an_older_seal_put_back_is_refused_and_never_carried_forward(
    sealed: tuple[SQLiteBackend, Path],
) -> None:
    store, path = sealed
    (old,) = sqlite3.connect(path).execute("SELECT seal FROM state_seal").fetchone()
    store.log.append(b'{"type":"test","i":4}')
    with store._db.tx() as db:
        db.execute("DELETE FROM revocations WHERE id = 'id-0'")  # SOP's own change
    db = attacker_db(path)
    db.execute("INSERT INTO revocations (id, at) VALUES ('id-0', 100)")  # undo it, and
    db.execute("UPDATE state_seal SET seal = ?", (old,))  # put the matching old seal back
    db.close()
    store.close()
    store = SQLiteBackend.open(path, state_key=KEY)  # reopening restores the triggers
    with pytest.raises(IntegrityError, match="seal is for a log of `4` entries but the log holds"):
        store.verify_state(5)
    with pytest.warns(UnsignedLogWarning):
        store.log.unsafe_open_unsigned()
    with pytest.raises(StorageError, match="the log held `5` before this write: the seal was"):
        store.log.append(b'{"type":"test","i":5}')  # SOP never re-seals the old bytes forward
    store.close()


def test_a_forged_seal_is_refused_and_blocks_every_write(
    sealed: tuple[SQLiteBackend, Path],
) -> None:
    store, path = sealed
    store.close()
    db = attacker_db(path)
    (seal,) = db.execute("SELECT seal FROM state_seal").fetchone()
    db.execute("UPDATE state_seal SET seal = ?", (seal[:20] + bytes([seal[20] ^ 1]) + seal[21:],))
    db.close()
    store = SQLiteBackend.open(path, state_key=KEY)
    with pytest.raises(IntegrityError, match="MAC does not verify"):
        store.verify_state(4)
    with pytest.raises(StorageError, match="MAC does not verify"):
        store.capabilities.save_revocation("cap-x", 1)
    store.close()


def test_a_deleted_seal_is_refused(sealed: tuple[SQLiteBackend, Path]) -> None:
    store, path = sealed
    store.close()
    attacker_db(path).execute("DELETE FROM state_seal")
    store = SQLiteBackend.open(path, state_key=KEY)
    with pytest.raises(IntegrityError, match="derived state has no seal"):
        store.verify_state(4)
    store.close()


def test_a_dropped_trigger_is_named_by_a_read_only_check(
    sealed: tuple[SQLiteBackend, Path],
) -> None:
    from sop_verified.storage.sqlite_seal import check_state_file

    _, path = sealed
    assert check_state_file(path, KEY, 4) == len(SEALED)
    sqlite3.connect(path, isolation_level=None).execute("DROP TRIGGER revocations_seal_delete")
    with pytest.raises(IntegrityError, match="trigger `revocations_seal_delete` is missing"):
        check_state_file(path, KEY, 4)


def test_a_store_opened_without_the_key_cannot_write_sealed_state(
    sealed: tuple[SQLiteBackend, Path],
) -> None:
    store, path = sealed
    store.close()
    keyless = SQLiteBackend.open(path)
    with pytest.raises(StorageError, match="open the store with SOP's keys to write"):
        keyless.capabilities.save_revocation("cap-x", 1)
    with pytest.raises(IntegrityError, match="without SOP's state key"):
        keyless.verify_state(4)
    keyless.close()


def test_another_key_does_not_open_the_seal(sealed: tuple[SQLiteBackend, Path]) -> None:
    store, path = sealed
    store.close()
    other = SQLiteBackend.open(path, state_key=bytes(32))
    with pytest.raises(IntegrityError, match="MAC does not verify"):
        other.verify_state(4)
    other.close()


def test_row_digests_are_keyed_and_typed() -> None:
    keeper = SealKeeper(KEY, ("t",))
    other = SealKeeper(bytes(32), ("t",))
    assert keeper.digest("t", ("a", 1)) != other.digest("t", ("a", 1))  # keyed
    assert keeper.digest("t", ("1",)) != keeper.digest("t", (1,))  # typed
    assert keeper.digest("t", ("a", "b")) != keeper.digest("t", ("ab", ""))  # unambiguous
    assert keeper.digest("t", (b"a",)) != keeper.digest("t", ("a",))
    assert keeper.digest("t", (None,)) != keeper.digest("t", ("",))


def test_a_row_planted_before_sops_write_makes_that_write_fail(
    sealed: tuple[SQLiteBackend, Path],
) -> None:
    """Planted unsealed, then deleted after SOP's write was ignored: the seal would never know.

    So SOP's sealed inserts are strict: the plant makes the real write fail loudly.
    """
    store, path = sealed
    db = sqlite3.connect(path, isolation_level=None)
    (sql,) = db.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'revocations_seal_insert'"
    ).fetchone()
    db.execute("DROP TRIGGER revocations_seal_insert")
    db.execute("INSERT INTO revocations (id, at) VALUES ('cap-x', 1)")
    db.execute(sql)  # the trigger put back, so nothing looks amiss
    db.close()
    with pytest.raises(StorageError, match=r"UNIQUE constraint failed: revocations\.id"):
        store.capabilities.save_revocation("cap-x", 5)
