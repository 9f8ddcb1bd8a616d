"""The telemetry boundary of a running `sop serve`: a context value not allow-listed is in no
metric, no decision log line, nothing on the server's stderr and no event; the allow-listed one
is in the events; the log itself keeps both."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import orjson
from served import Served, prepare, request

from sop_verified.nexus.event_ops import DataDirEvents
from sop_verified.nexus.state_ops import accept_config
from sop_verified.server.certs import client_ssl_context

MARKER = "sensitive-served-marker-51be"
ALLOWED = "allowed-served-value"


def test_a_served_sop_keeps_a_sensitive_context_value_out_of_metrics_logs_and_events(
    tmp_path: Path,
) -> None:
    prepared = prepare(tmp_path)
    with (prepared.data_dir / "sop.toml").open("a") as toml:
        toml.write('\n[telemetry]\nallow = ["classification"]\n')
    accept_config(prepared.data_dir)  # what may leave SOP changes only through a logged act
    lines = tmp_path / "decisions.jsonl"
    server = Served(prepared.data_dir, "--decision-log", str(lines))
    cert, key, ca = prepared.client()
    try:
        with httpx.Client(verify=client_ssl_context(cert, key, ca), timeout=30) as c:
            for n, allow in ((1, True), (2, False), (3, True)):
                body = request(prepared.token, n, allow=allow)
                body["context"] |= {"tenant": MARKER, "labels": [MARKER], "classification": ALLOWED}
                assert c.post(f"{server.bridge}/v1/decide", json=body).status_code == 200
        metrics = httpx.get(f"{server.read}/metrics").text
    finally:
        assert server.stop() == 0
    assert 'sop_decisions_total{code="permitted",effect="ALLOW",stage="policy"} 2.0' in metrics
    assert MARKER not in metrics
    assert len(lines.read_text().splitlines()) == 3 and MARKER not in lines.read_text()
    assert MARKER not in server.stderr()
    with DataDirEvents(prepared.data_dir) as source:
        events = source.read(0, source.refresh())
    decisions = [orjson.loads(e.body)["data"] for e in events if e.type == "sop.decision.v1"]
    served = [d for d in decisions if d["request"]["request_id"] in ("r-1", "r-2", "r-3")]
    assert [d["request"]["context"] for d in served] == [{"classification": ALLOWED}] * 3
    assert all(MARKER.encode() not in e.body for e in events)
    db = sqlite3.connect(f"file:{prepared.data_dir / 'sop.db'}?mode=ro&immutable=1", uri=True)
    kept = db.execute("SELECT COUNT(*) FROM log_entries WHERE instr(payload, ?) > 0", (MARKER,))
    assert kept.fetchone()[0] == 3  # the log keeps every byte it needs to verify
    db.close()
