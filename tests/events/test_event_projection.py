"""One log entry (or signed checkpoint), one CloudEvent: every kind SOP logs, the format,
determinism, authentication, and where checkpoints stand among the entries."""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest
from cloudevents.core.formats.json import JSONFormat
from jsonschema import Draft202012Validator

from sop_verified.core.persistence.entries import tombstone_entry
from sop_verified.errors import IntegrityError
from sop_verified.events.boundary import TelemetryBoundary
from sop_verified.events.kinds import CHECKPOINT, GENERIC, KINDS
from sop_verified.events.model import Event
from sop_verified.events.projection import project_entry
from sop_verified.events.schemas import schema_files
from sop_verified.nexus.event_ops import DataDirEvents
from sop_verified.storage.persist_index import ObjectRecord
from sop_verified.tools.checkpoint import Checkpoint

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "docs" / "events"
ORIGIN = "sop.local/log"


def _validators() -> dict[str, Draft202012Validator]:
    out = {}
    for path in SCHEMAS.glob("*.schema.json"):
        schema = json.loads(path.read_text())
        Draft202012Validator.check_schema(schema)
        out[schema["title"]] = Draft202012Validator(
            schema, format_checker=Draft202012Validator.FORMAT_CHECKER
        )
    return out


def _all_events(data_dir: Path) -> list[Event]:
    with DataDirEvents(data_dir) as source:
        size = source.refresh()
        return [e for at in range(0, size, 256) for e in source.read(at, min(size, at + 256))]


def _rows(data_dir: Path, sql: str) -> list[Any]:
    db = sqlite3.connect(f"file:{data_dir / 'sop.db'}?mode=ro&immutable=1", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def _payloads(data_dir: Path) -> list[bytes]:
    return [bytes(r[0]) for r in _rows(data_dir, "SELECT payload FROM log_entries ORDER BY idx")]


def _checkpoints(data_dir: Path) -> list[tuple[int, str]]:
    return [(r[0], r[1]) for r in _rows(data_dir, "SELECT size, note FROM log_checkpoints")]


def _entry_events(events: list[Event]) -> list[Event]:
    return [e for e in events if e.type != CHECKPOINT.event_type]


def _tombstone() -> dict[str, Any]:
    record = ObjectRecord(
        effect_index=11,
        decision_index=10,
        scope="csp-state",
        name="session-1/state.json",
        version=1,
        stored="session-1/state.json.v1",
        digest="sha256:" + "ab" * 32,
        size=5,
        created_at=1_800_000_000,
    )
    entry: dict[str, Any] = orjson.loads(tombstone_entry(record, rule="keep", time=1_800_000_100))
    return entry


def test_the_schema_files_are_the_ones_the_shapes_generate() -> None:
    on_disk = {p.name: p.read_bytes() for p in SCHEMAS.glob("*.schema.json")}
    assert on_disk == schema_files(), "regenerate: python3 -m sop_verified.events.schemas"
    assert len(on_disk) == len(KINDS) + 2  # and the fallback and checkpoint kinds


def test_the_events_readme_lists_every_type() -> None:
    text = (SCHEMAS / "README.md").read_text()
    listed = {line.split("`")[1] for line in text.splitlines() if line.startswith("| `sop.")}
    assert listed == {k.event_type for k in (*KINDS.values(), GENERIC, CHECKPOINT)}


def test_every_entry_sop_logs_is_one_event_of_its_own_kind_valid_against_its_schema(
    rich_log: Path,
) -> None:
    validators = _validators()
    payloads = _payloads(rich_log)
    events = _all_events(rich_log)
    assert [e.position for e in events] == list(range(len(events)))
    entries = _entry_events(events)
    assert [e.id for e in entries] == [f"{ORIGIN}/{i}" for i in range(len(payloads))]  # one each
    for event in events:
        validators[event.type].validate(orjson.loads(event.body))
    seen = set()
    for event, payload in zip(entries, payloads, strict=True):
        entry = orjson.loads(payload)
        name = entry["op"] if entry["type"] == "admin" else entry["type"]
        assert event.type == f"sop.{name}.v1", (event.id, entry)  # never the fallback
        seen.add(name)
    tomb = project_entry(ORIGIN, 7, _tombstone(), TelemetryBoundary(), 9)
    validators[tomb.type].validate(orjson.loads(tomb.body))
    seen.add("persist.tombstone")
    assert seen == set(KINDS), f"kinds never exercised: {set(KINDS) - seen}"


def test_event_attributes_follow_cloudevents_and_carry_the_log_index(rich_log: Path) -> None:
    events = _all_events(rich_log)
    payloads = _payloads(rich_log)
    for event in events:
        body = orjson.loads(event.body)
        assert body["specversion"] == "1.0"
        assert body["id"] == event.id
        assert body["source"] == ORIGIN
        assert body["type"] == event.type
        assert body["datacontenttype"] == "application/json"
    for event in _entry_events(events):
        body = orjson.loads(event.body)
        index = int(body["sopindex"])
        assert event.id == f"{ORIGIN}/{index}" and "sopsize" not in body
        entry = orjson.loads(payloads[index])
        if entry.get("type") == "attestation":
            assert "time" not in body  # no time of its own: none invented
    decision = next(orjson.loads(e.body) for e in events if e.type == "sop.decision.v1")
    assert decision["time"] == "2027-01-15T08:00:00Z"  # the demo clock, 1,800,000,000


def test_the_cloudevents_sdk_reads_every_event_back(rich_log: Path) -> None:
    reader = JSONFormat()
    for event in _all_events(rich_log):
        read = reader.read(None, event.body)
        body = orjson.loads(event.body)
        assert read.get_id() == event.id and read.get_type() == event.type
        assert read.get_source() == ORIGIN and read.get_specversion() == "1.0"
        assert read.get_extension("sopindex") == body.get("sopindex")
        assert read.get_extension("sopsize") == body.get("sopsize")
        assert read.get_data() == body["data"]
        if "time" in body:
            assert read.get_time().strftime("%Y-%m-%dT%H:%M:%SZ") == body["time"]


def test_projecting_twice_gives_identical_bytes(rich_log: Path) -> None:
    first = _all_events(rich_log)
    again = _all_events(rich_log)
    assert [e.body for e in first] == [e.body for e in again]
    entry = orjson.loads(_payloads(rich_log)[0])
    assert (
        project_entry(ORIGIN, 0, entry, TelemetryBoundary(), 0).body
        == project_entry(
            ORIGIN, 0, dict(reversed(list(entry.items()))), TelemetryBoundary(), 0
        ).body
    )


@pytest.mark.parametrize(
    ("entry", "data"),
    [
        (
            {"type": "future.thing", "time": 1_800_000_000, "secret": "x"},
            {"entry_type": "future.thing"},
        ),
        (
            {"type": "admin", "op": "future.op", "time": 1_800_000_000},
            {"entry_type": "admin", "op": "future.op"},
        ),
        ({"type": "decision", "reasons": "x"}, {"entry_type": "decision"}),  # fields do not match
        ({"no_type": True}, {}),
        ({"type": "has a space: free text"}, {}),  # never free text, even as a type
    ],
)
def test_an_entry_of_an_unknown_kind_is_still_one_event(
    entry: dict[str, Any], data: dict[str, Any]
) -> None:
    event = project_entry(ORIGIN, 3, entry, TelemetryBoundary(), 4)
    assert event.type == GENERIC.event_type == "sop.entry.v1"
    body = orjson.loads(event.body)
    _validators()["sop.entry.v1"].validate(body)
    assert body["data"] == data
    assert ("time" in body) == ("time" in entry)


def test_an_entry_that_does_not_verify_raises_and_never_becomes_an_event(
    rich_log: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "data"
    shutil.copytree(rich_log, copy)
    payloads = _payloads(copy)
    at = next(i for i, p in enumerate(payloads) if b'"effect":"DENY"' in p)
    forged = payloads[at].replace(b'"effect":"DENY"', b'"effect":"ALLOW"')
    assert forged != payloads[at]
    db = sqlite3.connect(str(copy / "sop.db"), isolation_level=None)
    db.execute("DROP TRIGGER log_entries_no_update")
    db.execute("UPDATE log_entries SET payload = ? WHERE idx = ?", (forged, at))
    db.close()
    with DataDirEvents(copy) as source:
        source.refresh()
        position = source.entry_position(at)
        assert len(source.read(0, position)) == position  # the events before it still verify
        with pytest.raises(IntegrityError, match=f"log index `{at}`"):
            source.read(position, position + 1)
        with pytest.raises(IntegrityError, match=f"log index `{at}`"):
            source.read(0, position + 1)  # a read that reaches it gives no event, and says where


def test_reading_past_the_signed_size_is_a_caller_error(rich_log: Path) -> None:
    with DataDirEvents(rich_log) as source:
        size = source.refresh()
        assert source.read(size, size) == []
        with pytest.raises(ValueError, match=f"past the `{size}` there are"):
            source.read(size - 1, size + 1)


def test_each_signed_checkpoint_is_one_event_right_after_the_last_entry_it_covers(
    rich_log: Path,
) -> None:
    events = _all_events(rich_log)
    stored = _checkpoints(rich_log)
    checkpoints = [e for e in events if e.type == CHECKPOINT.event_type]
    assert [e.id for e in checkpoints] == [f"{ORIGIN}/checkpoint/{size}" for size, _ in stored]
    for event, (size, note) in zip(checkpoints, stored, strict=True):
        body = orjson.loads(event.body)
        assert body["sopsize"] == str(size) and body["sopindex"] == str(size - 1)
        signed = Checkpoint.from_text(note.split("\n\n")[0] + "\n")
        assert body["data"] == {
            "size": size,
            "root": base64.b64encode(signed.root_hash).decode(),
            "note": note,
        }
        before = events[event.position - 1]  # the event of the last entry it covers
        assert before.id == f"{ORIGIN}/{size - 1}"
        after = events[event.position + 1 :][:1]
        assert all(e.id in (f"{ORIGIN}/{size}", f"{ORIGIN}/checkpoint/{size}") for e in after)
    with DataDirEvents(rich_log) as source:
        source.refresh()
        for event in events[:: max(1, len(events) // 40)]:
            assert source.position_of(event.id) == event.position
        assert source.position_of(f"{ORIGIN}/checkpoint/{stored[-1][0] + 1}") is None
        assert source.position_of("another.log/3") is None


def test_checkpoints_signed_before_a_key_rotation_verify_with_the_retired_key(
    rich_log: Path,
) -> None:
    payloads = [orjson.loads(p) for p in _payloads(rich_log)]
    rotation = next(i for i, e in enumerate(payloads) if e.get("type") == "log.key_rotation")
    before = [size for size, _ in _checkpoints(rich_log) if size <= rotation]
    assert before, "the rich log rotates its key after some checkpoints"
    with DataDirEvents(rich_log) as source:
        source.refresh()
        first = source.position_of(f"{ORIGIN}/checkpoint/{before[0]}")
        assert first is not None
        (event,) = source.read(first, first + 1)  # the current key alone does not sign it
        assert orjson.loads(event.body)["data"]["size"] == before[0]


def _forge_checkpoint(data_dir: Path, size: int, note: str) -> None:
    db = sqlite3.connect(str(data_dir / "sop.db"), isolation_level=None)
    db.execute("DROP TRIGGER log_checkpoints_no_update")
    db.execute("UPDATE log_checkpoints SET note = ? WHERE size = ?", (note, size))
    db.close()


@pytest.mark.parametrize("forgery", ["root", "signature", "origin"])
def test_a_checkpoint_row_that_does_not_verify_never_becomes_an_event(
    rich_log: Path, tmp_path: Path, forgery: str
) -> None:
    copy = tmp_path / "data"
    shutil.copytree(rich_log, copy)
    stored = _checkpoints(copy)
    size, note = stored[len(stored) // 2]
    body, _, signatures = note.partition("\n\n")
    lines = body.split("\n")
    if forgery == "root":  # signed lines kept, another tree's root: the signature fails
        lines[2] = base64.b64encode(bytes(32)).decode()
        forged = "\n".join(lines) + "\n\n" + signatures
    elif forgery == "signature":  # a signature line by a key this log never had
        forged = body + "\n\n" + "\u2014 sop.local/log AAAAAAAA" + "A" * 84 + "=\n"
    else:
        forged = note.replace(ORIGIN, "another.log", 1)
    assert forged != note
    _forge_checkpoint(copy, size, forged)
    with DataDirEvents(copy) as source:
        source.refresh()
        position = source.position_of(f"{ORIGIN}/checkpoint/{size}")
        assert position is not None
        assert len(source.read(0, position)) == position  # the events before it still verify
        with pytest.raises(IntegrityError, match=f"checkpoint stored at size `{size}`"):
            source.read(position - 1, position + 1)  # a read that reaches it gives no event
