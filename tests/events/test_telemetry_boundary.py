"""The telemetry boundary: a context value not allow-listed leaves SOP in no event and no log
record; an allow-listed one does; `hash` gives the keyed hash, never the value; the log keeps all.

The served half (metrics, the decision log lines, the server's stderr) is
tests/server/test_telemetry_boundary_served.py.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
import traceback
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from sop_verified.cli import app
from sop_verified.core.health import Health
from sop_verified.core.request import Decision, Request
from sop_verified.events.boundary import HASH_PREFIX
from sop_verified.events.model import Event
from sop_verified.nexus.config import DEFAULT_CONFIG, init_data_dir
from sop_verified.nexus.demo import SOUND_POLICIES
from sop_verified.nexus.sop import SOP
from sop_verified.server.telemetry import Metrics
from sop_verified.tools.canonical import canonical_json

NOW = 1_800_000_000
MARKER = "sensitive-marker-7f3a9c"  # in `tenant`, `labels` and DRAC's `session`
ALLOWED = "allowed-value-public"  # in `classification`, which is allow-listed


def _boot(tmp_path: Path, telemetry: str) -> tuple[SOP, str]:
    data_dir = tmp_path / "data"
    init_data_dir(data_dir, config_text=DEFAULT_CONFIG + "\n[telemetry]\n" + telemetry)
    sop = SOP.boot(data_dir, now=lambda: NOW)
    assert sop.health is Health.READY, sop.boot_report
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "policies.toml").write_text(SOUND_POLICIES)
    sop.activate_policy(policies)
    _, token = sop.admit(
        "drac",
        ["artifact.persist", "artifact.read", "phase.advance"],
        ["artifacts/drac/**"],
        expires=NOW + 86_400,
    )
    return sop, token


def _context() -> dict[str, Any]:
    return {"tenant": MARKER, "labels": [MARKER, "x"], "classification": ALLOWED}


def _through_sop(sop: SOP, token: str) -> list[Decision]:
    """The marker through every path a request takes: ALLOW, DENY, batch, effect, protocol."""
    base = {"principal": "drac", "action": "artifact.persist", "capability": token}
    allowed = {**base, "request_id": "a-1", "resource": "artifacts/drac/a.bin"}
    decisions = [sop.persist({**allowed, "context": _context()}, b"hello")]
    outside = {**base, "request_id": "d-1", "resource": "artifacts/emp/x.bin"}
    decisions.append(sop.submit({**outside, "context": {**_context(), "size_bytes": 5}}))
    unsigned = {**allowed, "request_id": "d-2", "capability": "", "context": _context()}
    decisions.append(sop.submit(unsigned))
    assert [d.allowed for d in decisions] == [True, False, False]
    batch = [
        Request(
            request_id=f"b-{i}",
            principal="drac",
            action="artifact.persist",
            resource=f"artifacts/drac/b-{i}.bin",
            capability=token,
            context={**_context(), "size_bytes": 5},
        )
        for i in range(3)
    ]
    decisions += sop.submit_batch(batch)
    assert all(d.allowed for d in decisions[-3:])
    assert sop.drac.open_session("s-1", token=token).allowed
    refuted = {  # the context disagrees with the resource: a refuted obligation, logged
        "request_id": "p-1",
        "principal": "drac",
        "action": "phase.advance",
        "resource": "artifacts/drac/sessions/s-1/phases/SCAN/complete",
        "capability": token,
        "context": {"session": MARKER, "phase": "SCAN", **_context()},
    }
    decisions.append(sop.submit(refuted))
    assert not decisions[-1].allowed
    decisions.append(sop.drac.catalog("s-1", "SCAN", "plan.json", b"{}", token=token))
    assert decisions[-1].allowed
    return decisions


def _events(sop: SOP) -> list[Event]:
    sub = sop.events.subscribe(start=0)
    return list(iter(lambda: sub.poll(0.2), None))


def _record_text(record: logging.LogRecord) -> str:
    parts = [record.getMessage(), repr(record.args), record.exc_text or ""]
    if record.exc_info and record.exc_info[1] is not None:
        parts.append("".join(traceback.format_exception(record.exc_info[1])))
    return "\n".join(parts)


def test_a_sensitive_context_value_never_leaves_in_an_event_or_a_log_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, every level
    sop, token = _boot(tmp_path, 'allow = ["classification"]\n')
    metrics = Metrics()  # what `sop serve` counts and logs of each decision (`sop.decisions`)
    try:
        for decision in _through_sop(sop, token):
            metrics.observe(decision, "decide", time.perf_counter())
        logged = [p for _, _, p in sop.store.log.log_entries(0)]
        events = _events(sop)
    finally:
        sop.close()
    assert sum(MARKER.encode() in p for p in logged) >= 6  # the log itself keeps everything
    assert len([e for e in events if e.type != "sop.checkpoint.v1"]) == len(logged)
    for event in events:
        assert MARKER.encode() not in event.body, event.body
    contexts = [
        orjson.loads(e.body)["data"].get("request", {}).get("context")
        for e in events
        if e.type == "sop.decision.v1"
    ]
    carried = [c for c in contexts if c and "classification" in c]
    assert len(carried) >= 6 and all(c == {"classification": ALLOWED} for c in carried)
    lines = [r for r in caplog.records if r.name == "sop.decisions"]
    assert len(lines) == 8, "the decision log lines were not captured: nothing would be proved"
    for record in caplog.records:
        assert MARKER not in _record_text(record), record.getMessage()
    assert MARKER not in metrics.render().decode()


def test_hash_mode_gives_the_keyed_hash_not_the_value(tmp_path: Path) -> None:
    sop, token = _boot(tmp_path, 'allow = ["classification"]\nmode = "hash"\n')
    try:
        _through_sop(sop, token)
        events = _events(sop)
    finally:
        sop.close()
    key = (tmp_path / "data" / "keys" / "telemetry.key").read_bytes()
    assert len(key) == 32 and os.stat(tmp_path / "data/keys/telemetry.key").st_mode & 0o077 == 0

    def mac(name: str, value: object) -> str:
        digest = hmac.new(key, canonical_json([name, value]), hashlib.sha256).hexdigest()
        return HASH_PREFIX + digest

    decisions = [orjson.loads(e.body)["data"] for e in events if e.type == "sop.decision.v1"]
    first = next(d["request"]["context"] for d in decisions if d["request"]["request_id"] == "a-1")
    assert first == {
        "classification": ALLOWED,
        "labels": mac("labels", sorted([MARKER, "x"])),
        "tenant": mac("tenant", MARKER),
        "size_bytes": mac("size_bytes", 5),  # bound from the data by `persist`
    }
    assert all(MARKER.encode() not in e.body for e in events)


def test_hash_mode_without_the_key_does_not_boot_and_says_how_to_make_one(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    init_data_dir(data_dir, config_text=DEFAULT_CONFIG + '\n[telemetry]\nmode = "hash"\n')
    (data_dir / "keys" / "telemetry.key").unlink()  # a data directory made before the key
    with SOP.boot(data_dir) as sop:
        assert sop.health is Health.FAILED
        assert "sop keys telemetry" in sop.boot_report.detail
    result = CliRunner().invoke(app, ["keys", "telemetry", "--data-dir", str(data_dir), "--json"])
    assert result.exit_code == 0 and result.output.strip().endswith('telemetry.key"\n}')
    key = (data_dir / "keys" / "telemetry.key").read_bytes()
    assert key.hex() not in result.output
    again = CliRunner().invoke(app, ["keys", "telemetry", "--data-dir", str(data_dir)])
    assert again.exit_code == 2 and "exists already" in again.output
    with SOP.boot(data_dir) as sop:
        assert sop.health is Health.READY, sop.boot_report


def test_an_older_data_directory_without_table_or_key_boots_and_drops_the_context(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    init_data_dir(data_dir)
    (data_dir / "keys" / "telemetry.key").unlink()
    with SOP.boot(data_dir, now=lambda: NOW) as sop:
        assert sop.health is Health.READY, sop.boot_report
        request = {
            "request_id": "r-1",
            "principal": "drac",
            "action": "artifact.persist",
            "resource": "artifacts/drac/x.bin",
            "context": _context(),
        }
        sop.submit(request)
        last = [e for e in _events(sop) if e.type == "sop.decision.v1"][-1]
    assert orjson.loads(last.body)["data"]["request"]["context"] == {}


def test_an_attribute_outside_the_context_schema_cannot_be_allow_listed(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"`secret_sauce` is not a context attribute"):
        init_data_dir(
            tmp_path / "d",
            config_text=DEFAULT_CONFIG + '\n[telemetry]\nallow = ["secret_sauce"]\n',
        )
