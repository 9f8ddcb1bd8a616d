"""The README's witness walk-through runs as written (docs/examples/witness_quickstart.sh)."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "examples" / "witness_quickstart.sh"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_readme_shows_the_script_verbatim() -> None:
    body = SCRIPT.read_text().replace("set -euo pipefail\n", "")
    assert body in (ROOT / "README.md").read_text()


@pytest.mark.slow
def test_the_walk_through_publishes_a_cosigned_checkpoint(tmp_path: Path) -> None:
    bridge, read, witness = _free_port(), _free_port(), _free_port()
    text = SCRIPT.read_text().replace(
        "sop serve --data-dir sop-data &",
        f"sop serve --data-dir sop-data --bridge 127.0.0.1:{bridge} --read 127.0.0.1:{read} &",
    )
    text = text.replace(":7601", f":{read}").replace(":7650", f":{witness}")
    done = subprocess.run(
        ["bash", "-c", text],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verified" in (done.stdout + done.stderr).lower()
    assert "— witness.example/w1 " in done.stdout  # the served checkpoint carries the cosignature
