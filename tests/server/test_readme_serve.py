"""The README's `sop serve` walk-through runs as written (docs/examples/serve_quickstart.sh)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "examples" / "serve_quickstart.sh"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_readme_shows_the_script_verbatim() -> None:
    body = SCRIPT.read_text().replace("set -euo pipefail\n", "")
    assert body in (ROOT / "README.md").read_text()


def test_the_walk_through_decides_over_mutual_tls_and_verifies_a_receipt(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "docs" / "examples" / "policies", tmp_path / "docs/examples/policies")
    bridge, read = _free_port(), _free_port()
    text = SCRIPT.read_text().replace(
        "sop serve --data-dir sop-data &",
        f"sop serve --data-dir sop-data --bridge 127.0.0.1:{bridge} --read 127.0.0.1:{read} &",
    )
    text = text.replace(":7600", f":{bridge}").replace(":7601", f":{read}")
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
    assert '"effect":"ALLOW"' in done.stdout
    assert "ALLOW at log index" in done.stdout
