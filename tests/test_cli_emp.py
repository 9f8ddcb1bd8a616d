"""`sop emp revoke-key`: the operator revokes EMP's signing key from the command line."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from sop_verified.cli import app
from sop_verified.nexus.sop import SOP

runner = CliRunner()


def test_revoke_key_logs_once_and_says_so(tmp_path: Path) -> None:
    data = tmp_path / "data"
    SOP.init(data)
    with SOP.boot(data) as sop:
        key_id = sop.register_emp_key(
            Ed25519PrivateKey.from_private_bytes(b"\x05" * 32).public_key()
        )
        size = sop.log.size
    args = ["emp", "revoke-key", key_id, "--reason", "rotated", "--data-dir", str(data), "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    said = json.loads(first.output)
    assert said["revoked"] is True and said["log_index"] >= size
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and json.loads(again.output)["revoked"] is False
    with SOP.boot(data) as sop:
        services = sop.protocols
        assert services is not None and services.emp_state.revoked_at(key_id) == said["log_index"]
    unknown = runner.invoke(app, ["emp", "revoke-key", "f" * 64, "--data-dir", str(data)])
    assert unknown.exit_code == 2 and "not registered" in unknown.output
