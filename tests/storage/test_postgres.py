"""The PostgreSQL backend's own rules: schema versions, the DSN's secrecy, batch sequencing.

What the conformance suite cannot say for every backend: a schema at an
unknown version (or with none) is refused and migrations apply in order; a
password in the DSN never reaches an error or a log; a batch of entries is
one transaction on the head row, and a writer that lost the race writes
nothing; the log and the write-once tables refuse an outsider's UPDATE,
DELETE and TRUNCATE; a lost connection is a StorageError and the next call
recovers. Every test runs against the real server in a schema of its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import psycopg
import pytest
from pg_server import DSN, connect, scratch_schema
from psycopg import sql

from sop_verified.core.persistence import index_entries
from sop_verified.errors import LogHeadMovedError, StorageError
from sop_verified.storage import postgres_schema
from sop_verified.storage.postgres import PostgresBackend, redact_dsn
from sop_verified.storage.postgres_db import PostgresDB
from sop_verified.tools.canonical import canonical_json
from sop_verified.tools.signed_note import Signer, generate
from sop_verified.tools.tlog_store import Batch

KEY = bytes(range(32))
ORIGIN = "postgres.test/log"
PASSWORD = "Sup3r-s3cret-pw"


@pytest.fixture
def schema() -> Iterator[str]:
    with scratch_schema() as name:
        yield name


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer.from_string(generate(ORIGIN)[0])


@contextmanager
def opened(schema: str, **kw: Any) -> Iterator[PostgresBackend]:
    backend = PostgresBackend.open(DSN, schema=schema, state_key=KEY, **kw)
    try:
        yield backend
    finally:
        backend.close()


def _in(schema: str, statement: str, params: tuple[object, ...] = ()) -> list[Any]:
    """Run ``statement`` in ``schema`` as an outsider (a plain session, no seal journal)."""
    with connect() as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        cur = conn.execute(statement, params or None)
        return cur.fetchall() if cur.description else []


# ---- schema versions ------------------------------------------------------------------
def test_migrations_are_numbered_from_one_without_a_gap() -> None:
    versions = [v for v, _, _ in postgres_schema.MIGRATIONS]
    assert versions == list(range(1, len(versions) + 1))
    assert versions[-1] == postgres_schema.LATEST


def test_a_new_schema_is_created_at_the_latest_version(schema: str) -> None:
    with opened(schema) as backend:
        backend.self_test()
    rows = _in(schema, "SELECT version FROM sop_schema_version ORDER BY version")
    assert rows == [(v,) for v, _, _ in postgres_schema.MIGRATIONS]
    with opened(schema, migrate=False) as backend:  # a boot at the latest version changes nothing
        backend.self_test()


def test_a_schema_at_an_unknown_version_is_refused(schema: str) -> None:
    with opened(schema):
        pass
    newer = postgres_schema.LATEST + 1
    _in(schema, "INSERT INTO sop_schema_version (version, description) VALUES (%s, 'x')", (newer,))
    for migrate in (True, False):
        with pytest.raises(StorageError) as err:
            PostgresBackend.open(DSN, schema=schema, state_key=KEY, migrate=migrate)
        assert f"at version `{newer}`" in str(err.value)
        assert f"knows versions 1 to `{postgres_schema.LATEST}`" in str(err.value)


def test_a_schema_with_tables_but_no_version_is_refused(schema: str) -> None:
    _in(schema, f"CREATE SCHEMA {schema}; CREATE TABLE {schema}.log_entries (idx bigint)")
    with pytest.raises(StorageError, match=r"holds tables but no schema version \(found no"):
        PostgresBackend.open(DSN, schema=schema, state_key=KEY)
    assert _in(schema, "SELECT to_regclass('sop_schema_version')") == [(None,)]  # nothing made


def test_a_schema_whose_version_rows_were_deleted_is_refused(schema: str) -> None:
    with opened(schema):
        pass
    _in(schema, "DELETE FROM sop_schema_version")
    with pytest.raises(StorageError, match="found no version"):
        PostgresBackend.open(DSN, schema=schema, state_key=KEY)


def test_a_boot_that_must_not_migrate_refuses_a_missing_schema(schema: str) -> None:
    with pytest.raises(StorageError, match=r"holds no SOP tables \(found no version\)"):
        PostgresBackend.open(DSN, schema=schema, state_key=KEY, migrate=False)
    assert _in(schema, "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)) == []


def test_pending_migrations_apply_in_order_and_a_boot_refuses_until_they_do(
    schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with opened(schema):
        pass  # at the released version
    base = postgres_schema.LATEST
    later = (
        (base + 1, "a table", "CREATE TABLE later (a BIGINT);"),
        (base + 2, "a column on it", "ALTER TABLE later ADD COLUMN b TEXT;"),  # needs the first
    )
    monkeypatch.setattr(postgres_schema, "MIGRATIONS", (*postgres_schema.MIGRATIONS, *later))
    monkeypatch.setattr(postgres_schema, "LATEST", base + 2)
    with pytest.raises(StorageError, match=f"at version `{base}` and this build at `{base + 2}`"):
        PostgresBackend.open(DSN, schema=schema, state_key=KEY, migrate=False)
    with opened(schema) as backend:
        backend.self_test()
    rows = _in(schema, "SELECT version FROM sop_schema_version ORDER BY version")
    assert [r[0] for r in rows] == list(range(1, base + 3))
    assert _in(schema, "SELECT a, b FROM later") == []


def test_replicas_starting_together_migrate_once(schema: str) -> None:
    errors: list[BaseException] = []

    def start() -> None:
        try:
            with opened(schema):
                pass
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _in(schema, "SELECT count(*) FROM sop_schema_version") == [(postgres_schema.LATEST,)]


def test_a_schema_name_that_would_need_quoting_is_refused() -> None:
    for bad in ("Sop", "sop; DROP TABLE x", "1sop", "", "a" * 64):
        with pytest.raises(StorageError, match="is not a PostgreSQL schema name"):
            PostgresBackend.open(DSN, schema=bad, state_key=KEY)


# ---- the DSN's password ---------------------------------------------------------------------
def _with_password(port: int, *, url: bool) -> str:
    if url:
        return f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/test"
    return f"host=127.0.0.1 port={port} dbname=test user=postgres password={PASSWORD}"


def test_redacting_a_dsn_hides_its_password_in_either_form() -> None:
    for url in (True, False):
        shown = redact_dsn(_with_password(5432, url=url))
        assert PASSWORD not in shown
        assert "password=***" in shown and "host=127.0.0.1" in shown
    assert redact_dsn(f"host=x password='{PASSWORD} x' junk") == "<a DSN that does not parse>"


def test_a_password_never_reaches_an_error_or_a_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    for url in (True, False):
        with pytest.raises(StorageError) as err:  # nothing listens there
            PostgresBackend.open(_with_password(1, url=url), schema="sop", state_key=KEY)
        seen.append(str(err.value))
        assert "cannot connect to PostgreSQL" in str(err.value)
        assert "password=***" in str(err.value)
        with pytest.raises(StorageError) as err:  # the pool's own attempts log their failures
            PostgresDB(_with_password(1, url=url), "sop", timeout=0.3)
        seen.append(str(err.value))
    for broken in (
        f"host=x password={PASSWORD[:6]} {PASSWORD[6:]}",
        f"postgresql://u:{PASSWORD}@h:x/d",
    ):
        with pytest.raises(StorageError) as err:  # the parser's message would quote it
            PostgresBackend.open(broken, schema="sop", state_key=KEY)
        seen.append(str(err.value))
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert caplog.records  # the pool did log its failed attempts
    for text in (*seen, logged):
        assert PASSWORD not in text
        assert PASSWORD[:6] not in text and PASSWORD[6:] not in text


def test_a_dsn_with_a_password_works_and_is_never_shown(
    schema: str, signer: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    backend = PostgresBackend.open(_with_password(5432, url=True), schema=schema, state_key=KEY)
    try:  # trust authentication takes the password and ignores it
        backend.log.open(signer=signer, origin=ORIGIN)
        assert backend.log.append(b"entry") == 0
        assert PASSWORD not in backend.where and PASSWORD not in repr(vars(backend))
    finally:
        backend.close()
    assert PASSWORD not in "\n".join(r.getMessage() for r in caplog.records)


# ---- sequencing -----------------------------------------------------------------------------
def test_a_batch_of_entries_is_one_transaction_on_the_head_row(schema: str, signer: Signer) -> None:
    with opened(schema) as backend:
        backend.log.open(signer=signer, origin=ORIGIN)
        backend.set_entry_indexer(index_entries)
        db = backend._db
        calls: list[tuple[int, int] | None] = []
        real = db.tx

        def counted(growth: Any = None) -> Any:
            calls.append(growth)
            return real(growth)

        db.tx = counted  # type: ignore[method-assign]
        receipts = backend.log.opened.append_many([b"e-%d" % i for i in range(64)])
        assert [r.index for r in receipts] == list(range(64))
        assert len(calls) == 1  # one transaction for the batch, not one per entry
        assert calls[0]() == (0, 64)  # its growth, learnt before COMMIT
        assert _in(schema, "SELECT size FROM log_head") == [(64,)]
        backend.verify_state(64)


def test_a_writer_that_lost_the_race_writes_nothing_and_catches_up(
    schema: str, signer: Signer
) -> None:
    with opened(schema) as first, opened(schema) as second:
        first.log.open(signer=signer, origin=ORIGIN)
        second.log.open(signer=signer, origin=ORIGIN)  # both see an empty log
        assert first.log.append(b"first") == 0
        # its batch would reuse index 0: the store refuses it, the log re-reads the head
        # and builds the batch again on it: no gap, no duplicate, no error to the caller
        with pytest.raises(LogHeadMovedError, match="head is at `1` but the batch starts at `0`"):
            second.log_store.write_batch(Batch(0, [(0, bytes(32), b"stale")], [], None))
        assert second.log.append(b"second") == 1
        assert first.log.append(b"third") == 2  # and the first writer catches up in turn
        rows = first.log_store.read_entries(0, 5)
        assert [p for _, _, p in rows] == [b"first", b"second", b"third"]
        first.verify_state(3)
        first.log.open(signer=signer, origin=ORIGIN).verify_tail()


def test_an_audit_reads_a_live_log_in_one_snapshot(schema: str, signer: Signer) -> None:
    with opened(schema) as backend, opened(schema) as other:
        backend.log.open(signer=signer, origin=ORIGIN)
        backend.log.opened.append_many([b"e-%d" % i for i in range(20)])
        reader = backend.log_reader()
        try:
            assert reader.entry_rows() == 20  # the snapshot begins here
            other.log.open(signer=signer, origin=ORIGIN)
            other.log.opened.append_many([b"f-%d" % i for i in range(5)])  # another replica
            entries = list(reader.iter_entries(4))
            checkpoints = reader.checkpoints()
            tiles = dict(reader.iter_tiles(4))
        finally:
            reader.close()
        assert [i for i, _, _ in entries] == list(range(20))  # not the other replica's five
        assert checkpoints[-1][0] == 20  # so no entry lies past the last checkpoint read
        assert tiles == backend.log_store.read_tiles(list(tiles))
        again = backend.log_reader()
        assert again.entry_rows() == 25  # a new reader, a new snapshot
        again.close()


def test_the_log_tables_refuse_an_outsiders_changes(schema: str, signer: Signer) -> None:
    with opened(schema) as backend:
        backend.log.open(signer=signer, origin=ORIGIN)
        backend.log.opened.append_many([b"e-%d" % i for i in range(16)])  # a full tile
        backend.verdicts.put_once("sha256:aa", b"verdict")
    refused = {  # table: (a column to overwrite, the refusal)
        "log_entries": ("payload", "the log is append-only"),
        "log_tiles": ("hashes", "the log is append-only"),
        "log_checkpoints": ("note", "the log is append-only"),
        "verdicts": ("record", "proof verdicts are write-once"),
    }
    for table, (column, message) in refused.items():
        for statement in (
            f"UPDATE {table} SET {column} = {column}",
            f"DELETE FROM {table}",
            f"TRUNCATE {table}",
        ):
            with pytest.raises(psycopg.Error, match=message):
                _in(schema, statement)
    assert _in(schema, "SELECT count(*) FROM log_entries") == [(16,)]
    assert _in(schema, "SELECT count(*) FROM log_tiles") != [(0,)]


def test_an_outsider_cannot_write_a_derived_table(schema: str) -> None:
    with opened(schema):
        pass
    with pytest.raises(psycopg.Error, match="sop_seal_journal"):  # no journal: nothing unsealed
        _in(schema, "INSERT INTO revocations (id, at) VALUES ('cap-x', 1)")


def _cut(schema: str) -> int:
    """Terminate every session SOP holds in ``schema`` (an administrator, a server restart)."""
    killed = _in(
        schema,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
        (f"sop:{schema}",),
    )
    return sum(1 for (ok,) in killed if ok)


def _fill_pool(backend: PostgresBackend, n: int) -> None:
    """Make the pool hold ``n`` idle sessions (taken at once, then given back)."""
    with ExitStack() as held:
        for _ in range(n):
            held.enter_context(backend._db.connection())


def test_sessions_cut_under_the_pool_cost_no_read_and_no_write(schema: str) -> None:
    with opened(schema) as backend:  # a pool of 4 sessions
        backend.capabilities.save_capability("c1", None, b"claims")
        _fill_pool(backend, 4)
        assert _cut(schema) == 4  # every pooled session is dead now
        assert len(backend.capabilities.load_capabilities()) == 1  # a read: the next session
        _fill_pool(backend, 4)
        assert _cut(schema) == 4
        backend.capabilities.save_revocation("c1", 5)  # a write: dead at BEGIN, the next one
        assert _in(schema, "SELECT id FROM revocations") == [("c1",)]
        backend.verify_state(0)


def test_a_lost_connection_mid_write_is_a_storage_error_and_the_next_call_recovers(
    schema: str,
) -> None:
    with opened(schema) as backend:

        def write_then_cut() -> None:
            with backend._db.tx() as cur:
                cur.execute("INSERT INTO revocations (id, at) VALUES ('c1', 5)")
                assert _cut(schema) >= 1

        with pytest.raises(StorageError, match="postgresql write failed"):  # never sent again
            write_then_cut()
        assert _in(schema, "SELECT count(*) FROM revocations") == [(0,)]
        backend.capabilities.save_revocation("c2", 6)
        assert _in(schema, "SELECT id FROM revocations") == [("c2",)]
        backend.verify_state(0)


def test_every_session_commits_durably_whatever_the_server_default(schema: str) -> None:
    lax = DSN + " options='-c synchronous_commit=off'"  # as a server configured so would start
    backend = PostgresBackend.open(lax, schema=schema, state_key=KEY)
    try:
        assert backend._db.query("SHOW synchronous_commit") == [("on",)]  # spec: INV-9
    finally:
        backend.close()


def test_concurrent_writes_through_every_role_keep_the_seal_exact(
    schema: str, signer: Signer
) -> None:
    """The pool runs transactions side by side (SQLite has one writer): the seal row serializes
    their closes, so the seal still counts every row each of them wrote."""
    with opened(schema) as backend:  # a pool of 4 connections
        backend.log.open(signer=signer, origin=ORIGIN)
        backend.set_entry_indexer(index_entries)
        errors: list[BaseException] = []

        def work(w: int) -> None:
            try:
                for i in range(15):
                    backend.log.append(b"%d-%d" % (w, i))
                    backend.capabilities.save_capability(f"c-{w}-{i}", None, b"claims")
                    backend.verdicts.put_once(f"sha256:{w}-{i}", b"verdict")
                    if i % 5 == 0:
                        backend.capabilities.save_revocation(f"c-{w}-{i}", i)
                        backend.records.set_indexed_to(w * 100 + i)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert backend.log.log_size() == 90
        assert len(backend.capabilities.load_capabilities()) == 90
        backend.verify_state(90)


# ---- who carries out a pending decision -----------------------------------------------------
def decision(effect: str = "ALLOW") -> bytes:
    """A logged decision on a persist request (an ALLOW awaits its effect: a pending row)."""
    request = {"request_id": "r-1", "principal": "csp", "action": "state.persist"}
    return canonical_json({"type": "decision", "effect": effect, "time": 1, "request": request})


def test_boot_repair_takes_only_the_pending_decisions_of_replicas_that_are_gone(
    schema: str, signer: Signer
) -> None:
    with ExitStack() as stack:
        a, b, c = (stack.enter_context(opened(schema)) for _ in range(3))
        for backend in (a, b, c):
            backend.log.open(signer=signer, origin=ORIGIN)
            backend.set_entry_indexer(index_entries)
        d_a = a.log.append(decision())
        d_b = b.log.append(decision())
        owners = dict(_in(schema, "SELECT decision_index, owner FROM persist_pending"))
        assert owners == {d_a: a._owners.id, d_b: b._owners.id}
        assert c.persist.repairable() == []  # both replicas alive: neither row is c's to close
        assert [p.decision_index for p in a.persist.repairable()] == []  # nor its own
        b.close()  # b is gone (its process died or closed): its session and lock with it
        deadline = time.monotonic() + 5  # the server ends b's session a moment after it closed
        while not c.persist.repairable() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [p.decision_index for p in c.persist.repairable()] == [d_b]
        with opened(schema) as late:  # a replica booting while c holds b's rows: not its
            assert late.persist.repairable() == []
        assert [p.decision_index for p in c.persist.repairable()] == [d_b]  # claims are kept
        assert {p.decision_index for p in a.persist.pending()} == {d_a, d_b}


def test_a_replica_whose_session_was_cut_takes_its_owner_lock_again(
    schema: str, signer: Signer
) -> None:
    with opened(schema) as a, opened(schema) as c:
        for backend in (a, c):
            backend.log.open(signer=signer, origin=ORIGIN)
            backend.set_entry_indexer(index_entries)
        a.log.append(decision())
        with connect() as admin:  # cut a's owner session, as a PostgreSQL restart would
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (f"sop:{schema}:owner",),
            )
        a._owners._checked = 0.0  # past the recheck interval: a's next write looks again
        a.log.append(decision(effect="DENY"))  # no pending row: the lock is not needed
        later = a.log.append(decision())  # a pending row: a takes its lock again first
        held = {p.decision_index for p in c.persist.repairable()}
        assert later not in held  # a is alive again in PostgreSQL's eyes
