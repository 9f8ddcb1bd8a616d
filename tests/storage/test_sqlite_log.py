"""The SQLite log: group commit under threads, durable across reopen, insert-only tables."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from sop_verified.errors import IntegrityError, StorageError
from sop_verified.storage.sqlite import SQLiteBackend
from sop_verified.storage.sqlite_log import SQLiteLogReader
from sop_verified.tools import merkle
from sop_verified.tools.signed_note import Signer, generate
from sop_verified.tools.tlog_audit import audit_log

ORIGIN = "sop.local/log"


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer.from_string(generate(ORIGIN)[0])


def _open(path: Path, signer: Signer) -> SQLiteBackend:
    store = SQLiteBackend.open(path)
    store.log.open(origin=ORIGIN, signer=signer)
    return store


def test_concurrent_appends_are_gap_free_unique_and_durable(tmp_path: Path, signer: Signer) -> None:
    db = tmp_path / "sop.db"
    store = _open(db, signer)
    acknowledged: dict[bytes, int] = {}
    lock = threading.Lock()

    def work(w: int) -> None:
        for i in range(40):
            payload = b'{"w":%d,"i":%d}' % (w, i)
            index = store.log.append(payload)
            with lock:
                acknowledged[payload] = index

    threads = [threading.Thread(target=work, args=(w,)) for w in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    assert sorted(acknowledged.values()) == list(range(640))  # gap-free, duplicate-free
    reopened = _open(db, signer)
    stored = {payload: index for index, _, payload in reopened.log.log_entries()}
    assert stored == acknowledged  # every acknowledged entry survived the reopen
    (batches,) = sqlite3.connect(db).execute("SELECT COUNT(*) FROM log_checkpoints").fetchone()
    assert 1 <= batches <= 640
    reader = SQLiteLogReader(db)
    report = audit_log(reader, origin=ORIGIN, trusted=signer.verifier())
    reader.close()
    assert report.ok, report.findings


def test_receipts_carry_index_leaf_and_checkpoint(tmp_path: Path, signer: Signer) -> None:
    store = _open(tmp_path / "sop.db", signer)
    receipt = store.log.append_receipt(b"entry")
    assert (receipt.index, receipt.leaf_hash) == (0, merkle.leaf_hash(b"entry"))
    assert receipt.checkpoint is not None and receipt.checkpoint.startswith(ORIGIN + "\n1\n")
    assert store.log.log_size() == 1


@pytest.mark.parametrize("table", ["log_entries", "log_tiles", "log_checkpoints"])
@pytest.mark.parametrize("statement", ["UPDATE {t} SET rowid = rowid", "DELETE FROM {t}"])
def test_log_tables_refuse_update_and_delete(
    tmp_path: Path, signer: Signer, table: str, statement: str
) -> None:
    store = _open(tmp_path / "sop.db", signer)
    store.log.opened.append_many([b"%d" % i for i in range(20)])
    db = sqlite3.connect(tmp_path / "sop.db")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute(statement.format(t=table))


def test_reopen_detects_a_truncated_tail(tmp_path: Path, signer: Signer) -> None:
    store = _open(tmp_path / "sop.db", signer)
    store.log.opened.append_many([b"%d" % i for i in range(30)])
    store.close()
    db = sqlite3.connect(tmp_path / "sop.db")
    db.execute("DROP TRIGGER log_entries_no_delete")
    db.execute("DELETE FROM log_entries WHERE idx = 29")
    db.commit()
    with pytest.raises(IntegrityError, match="does not match the stored log"):
        _open(tmp_path / "sop.db", signer)


def test_verify_tail_detects_a_rewritten_last_payload(tmp_path: Path, signer: Signer) -> None:
    store = _open(tmp_path / "sop.db", signer)
    store.log.append(b"first")
    store.log.append(b"last")
    db = sqlite3.connect(tmp_path / "sop.db")
    db.execute("DROP TRIGGER log_entries_no_update")
    db.execute("UPDATE log_entries SET payload = x'00' WHERE idx = 1")
    db.commit()
    with pytest.raises(IntegrityError, match="does not hash to its leaf"):
        store.log.verify_tail()


def test_write_failure_is_a_storage_error_and_nothing_is_acknowledged(
    tmp_path: Path, signer: Signer
) -> None:
    store = _open(tmp_path / "sop.db", signer)
    store.log.append(b"zero")
    db = sqlite3.connect(tmp_path / "sop.db")
    db.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON log_entries BEGIN SELECT RAISE(ABORT, 'no'); END"
    )
    db.commit()
    with pytest.raises(StorageError, match="sqlite write failed"):
        store.log.append(b"one")
    assert store.log.log_size() == 1
    db.execute("DROP TRIGGER refuse")
    db.commit()
    assert store.log.append(b"one") == 1


def test_reader_refuses_a_file_without_log_tables(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)")
    with pytest.raises(StorageError, match="no log tables"):
        SQLiteLogReader(tmp_path / "other.db")
    with pytest.raises(StorageError, match="no database"):
        SQLiteLogReader(tmp_path / "missing.db")


def test_a_batch_larger_than_one_statement_is_stored_whole(tmp_path: Path, signer: Signer) -> None:
    path = tmp_path / "sop.db"
    store = _open(path, signer)
    payloads = [b"entry %d" % i for i in range(5000)]  # many statements' worth of rows and tiles
    receipts = store.log.opened.append_many(payloads)
    assert [r.index for r in receipts] == list(range(5000))
    assert [p for _, _, p in store.log.log_entries()] == payloads
    root = store.log.opened.root()
    store.close()
    reopened = _open(path, signer)  # the tail, tiles and checkpoint read back and match
    assert reopened.log.opened.root() == root
    reopened.close()
    reader = SQLiteLogReader(path)  # every entry, tile and checkpoint recomputed
    report = audit_log(reader, origin=ORIGIN, trusted=signer.verifier())
    reader.close()
    assert report.ok, report.findings
