"""The protocols' ledger: logged before applied, indexed, replayed, stale after an index failure."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from sop_verified.core.request import Decision, Permission, Reason, Request, Stage
from sop_verified.errors import IntegrityError, StorageError
from sop_verified.protocols.ledger import (
    ADMIN_OPS,
    RECORD_TYPES,
    ProtocolLedger,
    RecordSink,
    record_kind,
)
from sop_verified.storage.entry_log import UnsignedLogWarning
from sop_verified.storage.sqlite import SQLiteBackend
from sop_verified.storage.sqlite_seal import register
from sop_verified.tools.canonical import canonical_json
from sop_verified.tools.tlog_store import Receipt


class Events:
    def __init__(self) -> None:
        self.seen: list[str] = []


class FakeLog:
    def __init__(self, events: Events) -> None:
        self.events = events
        self.payloads: list[bytes] = []
        self.fail = False

    def append_receipt(self, payload: bytes) -> Receipt:
        if self.fail:
            raise StorageError("injected append failure")
        self.events.seen.append("append")
        self.payloads.append(payload)
        return Receipt(len(self.payloads) - 1, b"\1" * 32, len(self.payloads))


class FakeIndex:
    def __init__(self, events: Events) -> None:
        self.events = events
        self.rows: dict[int, str] = {}
        self.mark = 0
        self.fail = False

    def add(self, index: int, kind: str, receipt: bytes, *, indexed_to: int) -> None:
        if self.fail:
            raise StorageError("injected index failure")
        self.events.seen.append("index")
        self.rows[index] = kind
        self.mark = max(self.mark, indexed_to)

    def indexed_to(self) -> int:
        return self.mark

    def set_indexed_to(self, index: int) -> None:
        self.mark = max(self.mark, index)

    def records(self) -> list[tuple[int, str, bytes, bytes]]:
        return []


class Sink:
    def __init__(self, events: Events, refuse: bool = False) -> None:
        self.events = events
        self.refuse = refuse
        self.applied: list[int] = []

    def check(self, entry: Mapping[str, Any]) -> None:
        if self.refuse:
            raise IntegrityError("does not fit")

    def apply(self, index: int, entry: Mapping[str, Any], payload: bytes, receipt: Receipt) -> None:
        self.events.seen.append("apply")
        self.applied.append(index)


def _ledger(sink: Sink, log: FakeLog, index: FakeIndex) -> ProtocolLedger:
    sinks: dict[str, RecordSink] = dict.fromkeys(RECORD_TYPES | ADMIN_OPS, sink)
    return ProtocolLedger(log=log, index=index, sinks=sinks, now=lambda: 7)


ENTRY = {"type": "drac.phase", "session": "s", "phase": "A", "event": "enter"}


def test_a_record_is_logged_then_indexed_then_applied() -> None:
    events = Events()
    sink, log, index = Sink(events), FakeLog(events), FakeIndex(events)
    receipt = _ledger(sink, log, index).record(dict(ENTRY))
    assert events.seen == ["append", "index", "apply"]  # spec: INV-9
    assert log.payloads == [canonical_json(ENTRY)]
    assert index.rows == {receipt.index: "drac.phase"} and index.mark == receipt.index + 1


def test_a_record_the_state_refuses_is_never_logged() -> None:
    events = Events()
    log = FakeLog(events)
    with pytest.raises(IntegrityError):
        _ledger(Sink(events, refuse=True), log, FakeIndex(events)).record(dict(ENTRY))
    assert log.payloads == []


def test_a_failed_append_applies_nothing() -> None:
    events = Events()
    sink, log = Sink(events), FakeLog(events)
    log.fail = True
    with pytest.raises(StorageError):
        _ledger(sink, log, FakeIndex(events)).record(dict(ENTRY))
    assert sink.applied == []


def test_after_an_index_failure_the_ledger_is_stale_and_refuses_everything() -> None:
    events = Events()
    sink, log, index = Sink(events), FakeLog(events), FakeIndex(events)
    ledger = _ledger(sink, log, index)
    index.fail = True
    with pytest.raises(StorageError):
        ledger.record(dict(ENTRY))
    assert ledger.stale and sink.applied == []
    index.fail = False
    with pytest.raises(StorageError, match="stale"):
        ledger.record(dict(ENTRY))
    assert len(log.payloads) == 1  # nothing more was logged


def test_a_refusal_is_logged_and_answers_deny() -> None:
    events = Events()
    log = FakeLog(events)
    ledger = _ledger(Sink(events), log, FakeIndex(events))
    request = Request(request_id="r", principal="drac", action="phase.advance", resource="a")
    allow = Decision(Permission.ALLOW, (), "r", "cap", ("p",), 41)
    why = Reason(Stage.PROTOCOL, "out_of_order", "no")
    d = ledger.refuse("drac", allow, request, [why])
    assert d.effect is Permission.DENY and d.reasons == (why,)
    assert d.log_index == 0 and d.decision_index == 41
    assert b'"type":"protocol.refused"' in log.payloads[0]


def test_a_refused_persist_effect_closes_the_pending_decision() -> None:
    events = Events()
    log = FakeLog(events)
    ledger = _ledger(Sink(events), log, FakeIndex(events))
    request = Request(request_id="r", principal="drac", action="artifact.persist", resource="a")
    allow = Decision(Permission.ALLOW, (), "r", "cap", ("p",), 41)
    why = Reason(Stage.PROTOCOL, "out_of_order", "no")
    d = ledger.refuse_effect(allow, request, why, now=9)
    assert d.effect is Permission.DENY and d.reasons == (why,)
    assert d.log_index == 0 and d.decision_index == 41
    entry = log.payloads[0]
    assert b'"type":"persist.effect"' in entry and b'"outcome":"refused"' in entry
    assert b'"decision_index":41' in entry  # spec: INV-9 — nothing will follow this ALLOW


def test_a_refusal_stands_when_the_log_fails() -> None:
    events = Events()
    log = FakeLog(events)
    log.fail = True
    ledger = _ledger(Sink(events), log, FakeIndex(events))
    request = Request(request_id="r", principal="drac", action="artifact.persist", resource="a")
    allow = Decision(Permission.ALLOW, (), "r", "cap", ("p",), 41)
    why = Reason(Stage.PROTOCOL, "out_of_order", "no")
    for d in (
        ledger.refuse("drac", allow, request, [why]),
        ledger.refuse_effect(allow, request, why, now=9),
    ):
        assert d.effect is Permission.DENY and d.log_index is None and d.receipt is None
        assert [r.code for r in d.reasons] == ["out_of_order", "log_append_failed"]


def test_only_protocol_records_have_a_kind() -> None:
    assert record_kind(canonical_json(ENTRY)) == "drac.phase"
    assert record_kind(canonical_json({"type": "admin", "op": "emp.key.register"})) == (
        "emp.key.register"
    )
    assert record_kind(canonical_json({"type": "admin", "op": "capability.admit"})) is None
    assert record_kind(canonical_json({"type": "decision", "note": '"type":"csp.seal"'})) is None
    assert record_kind(canonical_json({"type": "drac.unknown"})) is None
    assert record_kind(b'"type":"csp.seal" but not json') is None


STATE_KEY = bytes(range(32))


def test_the_sqlite_index_catches_up_and_replays_in_log_order(tmp_path: Path) -> None:
    store = SQLiteBackend.open(tmp_path / "sop.db", state_key=STATE_KEY)
    with pytest.warns(UnsignedLogWarning):
        log = store.log.unsafe_open_unsigned()
    for i in range(5):
        store.log.append(canonical_json({"type": "decision", "i": i}))
        store.log.append(canonical_json({**ENTRY, "session": f"s{i}"}))
    index = store.records
    events = Events()
    sink = Sink(events)
    sinks: dict[str, RecordSink] = dict.fromkeys(RECORD_TYPES | ADMIN_OPS, sink)
    ledger = ProtocolLedger(log=store.log, index=index, sinks=sinks, now=lambda: 0)
    assert ledger.catch_up(store.log.log_entries, log.size, None) == 5
    assert index.indexed_to() == 10
    assert ledger.catch_up(store.log.log_entries, log.size, None) == 0  # nothing new
    assert ledger.replay() == 5
    assert sink.applied == [1, 3, 5, 7, 9]
    receipt = ledger.record({**ENTRY, "session": "live"})
    assert index.indexed_to() == receipt.index + 1
    store.close()


def test_the_sqlite_index_is_insert_only(tmp_path: Path) -> None:
    store = SQLiteBackend.open(tmp_path / "sop.db", state_key=STATE_KEY)
    index = store.records
    index.add(0, "drac.phase", b"{}", indexed_to=1)
    db = sqlite3.connect(str(tmp_path / "sop.db"))
    register(db, None)  # the seal's functions exist but refuse: the guard speaks first
    with pytest.raises(sqlite3.DatabaseError, match="insert-only"):
        db.execute("DELETE FROM protocol_records")
    db.close()
    with pytest.raises(StorageError, match="missing from the log"):
        index.records()  # the row names no log entry
    store.close()


def test_a_clean_stop_raises_the_mark_to_the_log_end_unless_stale(tmp_path: Path) -> None:
    """The next boot's catch-up then starts at the end, not at the last record."""
    store = SQLiteBackend.open(tmp_path / "sop.db", state_key=STATE_KEY)
    with pytest.warns(UnsignedLogWarning):
        store.log.unsafe_open_unsigned()
    sinks: dict[str, RecordSink] = dict.fromkeys(RECORD_TYPES | ADMIN_OPS, Sink(Events()))
    ledger = ProtocolLedger(log=store.log, index=store.records, sinks=sinks, now=lambda: 0)
    ledger.record({**ENTRY, "session": "one"})
    for i in range(5):
        store.log.append(canonical_json({"type": "decision", "i": i}))
    assert store.records.indexed_to() == 1
    ledger.followed_to(ledger.log_size())
    assert store.records.indexed_to() == 6
    ledger._stale = True  # an index write failed in this run: the mark must stay
    store.log.append(canonical_json({"type": "decision", "i": 5}))
    ledger.followed_to(ledger.log_size())
    assert store.records.indexed_to() == 6
    store.close()
