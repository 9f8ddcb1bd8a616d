"""Telemetry of `sop serve`: one JSON line per decision, metrics per stage, no request values."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from served import Served, prepare, request

from sop_verified.server.certs import client_ssl_context

SECRET = "tenant-zz-very-secret-41"


def test_decision_lines_and_metrics_carry_no_request_context_values(tmp_path: Path) -> None:
    prepared = prepare(tmp_path)
    lines = tmp_path / "decisions.jsonl"
    server = Served(prepared.data_dir, "--decision-log", str(lines))
    cert, key, ca = prepared.client()
    try:
        with httpx.Client(verify=client_ssl_context(cert, key, ca), timeout=30) as c:
            for n, allow in ((1, True), (2, False)):
                body = request(prepared.token, n, allow=allow)
                body["context"]["tenant"] = SECRET
                assert c.post(f"{server.bridge}/v1/decide", json=body).status_code == 200
        metrics = httpx.get(f"{server.read}/metrics").text
    finally:
        assert server.stop() == 0
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    assert [r["effect"] for r in records] == ["ALLOW", "DENY"]
    assert all(isinstance(r["log_index"], int) and r["latency_ms"] >= 0 for r in records)
    assert records[0]["request_id"] == "r-1" and records[1]["code"]
    assert SECRET not in lines.read_text()
    assert SECRET not in metrics and prepared.token not in metrics
    assert 'sop_decision_stage_seconds_count{stage="queue"}' in metrics
    assert 'sop_decision_stage_seconds_count{stage="decide_and_log"}' in metrics
    assert "sop_proof_gate_queue" in metrics and "sop_proof_gate_worker_restarts" in metrics
    assert 'sop_health{state="READY"} 1.0' in metrics
