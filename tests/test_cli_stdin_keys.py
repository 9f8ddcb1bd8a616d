"""`-` for a key option: the verifier key read from standard input (`--vkey -`)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from sop_verified.cli import app
from sop_verified.nexus.sop import SOP

runner = CliRunner()


def test_log_verify_takes_its_verifier_key_from_standard_input(tmp_path: Path) -> None:
    data = tmp_path / "data"
    SOP.init(data)
    with SOP.boot(data):
        pass
    vkey = (data / "keys" / "checkpoint.vkey").read_text()
    args = ["log", "verify", "--data-dir", str(data), "--vkey", "-", "--json"]
    ok = runner.invoke(app, args, input=vkey)
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["ok"] is True
    empty = runner.invoke(app, args, input="")
    assert empty.exit_code == 2 and "standard input holds no verifier key" in empty.output
    other = runner.invoke(app, args, input="other+01234567+" + "A" * 44)
    assert other.exit_code != 0 and other.exit_code != 3, other.output
