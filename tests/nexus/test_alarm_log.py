"""Integrity alarms are logged (issue 16, item 1): an ``alarm`` entry each, so an event each."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import orjson
import pytest
from dir_snapshot import snapshot

from sop_verified.core.health import Health
from sop_verified.events.boundary import TelemetryBoundary
from sop_verified.events.projection import project_entry
from sop_verified.nexus.alarm_log import AlarmLog
from sop_verified.nexus.sop import SOP


def _alarms(sop: SOP) -> list[dict[str, object]]:
    entries = [orjson.loads(p) for _, _, p in sop.store.log.log_entries(0)]
    return [e for e in entries if e.get("type") == "alarm"]


def test_an_alarm_is_logged_once_and_becomes_its_event(tmp_path: Path) -> None:
    data = tmp_path / "data"
    SOP.init(data)
    with SOP.boot(data, now=lambda: 1_800_000_000) as sop:
        assert sop.health is Health.READY
        for _ in range(3):  # the same alarm raised again and again: one entry
            sop.registry.raise_alarm("witness", "witness `w1` refused checkpoint 9: a fork")
        sop.registry.raise_alarm("persistence", "`artifacts/x` is not the bytes the log holds")
        assert sop.health is Health.DEGRADED  # at once, before anything is logged
    with SOP.boot(data) as again:
        alarms = _alarms(again)
        origin = again.log.origin
        index = next(
            i
            for i, _, p in again.store.log.log_entries(0)
            if orjson.loads(p).get("type") == "alarm"
        )
    assert alarms == [
        {
            "type": "alarm",
            "service": "witness",
            "reason": "witness `w1` refused checkpoint 9: a fork",
            "health": "DEGRADED",
            "time": 1_800_000_000,
        },
        {
            "type": "alarm",
            "service": "persistence",
            "reason": "`artifacts/x` is not the bytes the log holds",
            "health": "DEGRADED",
            "time": 1_800_000_000,
        },
    ]
    event = project_entry(origin, index, alarms[0], TelemetryBoundary(), index)
    assert event.type == "sop.alarm.v1"
    assert orjson.loads(event.body)["data"]["service"] == "witness"


def test_a_read_only_boot_logs_no_alarm_and_changes_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    SOP.init(data)
    with SOP.boot(data):
        pass
    before = snapshot(data)
    with SOP.boot(data, read_only=True) as sop:
        sop.registry.raise_alarm("witness", "a refusal")
        assert sop.health is Health.DEGRADED
    assert snapshot(data) == before


def test_an_alarm_that_cannot_be_logged_is_a_warning_and_never_reaches_the_raiser(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def refuse(payload: bytes) -> int:
        raise OSError("the log is stopped")

    alarms = AlarmLog(refuse, now=lambda: 1)
    alarms.record("log", "the anchor cannot be written")  # returns at once, raises nothing
    alarms.close()
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == [
        "integrity alarm of `log` not logged (OSError: the log is stopped):"
        " the anchor cannot be written"
    ]


def test_recording_never_waits_for_the_append() -> None:
    release = threading.Event()
    appended: list[bytes] = []

    def slow(payload: bytes) -> int:
        release.wait(10)
        appended.append(payload)
        return len(appended) - 1

    alarms = AlarmLog(slow, now=lambda: 1)
    for i in range(5):
        alarms.record("witness", f"refusal {i}")  # the first append is blocked meanwhile
    assert appended == []
    release.set()
    alarms.close()
    assert [orjson.loads(p)["reason"] for p in appended] == [f"refusal {i}" for i in range(5)]
