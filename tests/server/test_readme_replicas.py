"""The README's two-replica walk-through runs as written (docs/examples/replicas_quickstart.sh).

Two `sop serve` processes on one PostgreSQL schema: a decision through each
lands in one log, a revocation through one is in force on the other at once,
and `sop log verify` passes from the second replica's directory.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from pg_server import DSN, scratch_schema

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "examples" / "replicas_quickstart.sh"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_readme_shows_the_script_verbatim() -> None:
    body = SCRIPT.read_text().replace("set -euo pipefail\n", "")
    assert body in (ROOT / "README.md").read_text()


@pytest.mark.slow
def test_two_replicas_share_one_log_and_a_revocation(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "docs" / "examples" / "policies", tmp_path / "docs/examples/policies")
    text = SCRIPT.read_text().replace("postgresql://127.0.0.1:5432/test", DSN)
    for port in ("7610", "7611", "7620", "7621"):
        text = text.replace(port, str(_free_port()))
    with scratch_schema() as schema:
        done = subprocess.run(
            ["bash", "-c", text.replace("sop_replicas", schema)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env={**os.environ, "COLUMNS": "200"},
        )
    assert done.returncode == 0, done.stdout + done.stderr
    answers = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"')]
    decisions = [a for a in answers if "effect" in a]
    assert [d["effect"] for d in decisions] == ["ALLOW", "ALLOW", "DENY"], decisions
    assert decisions[1]["log_index"] > decisions[0]["log_index"]
    assert decisions[2]["reasons"][0]["code"] == "revoked"
    assert "log verified: no tampering found" in done.stdout
