"""`sop state check|repair` on a PostgreSQL data directory: a precise refusal, nothing changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pg_server import DSN, scratch_schema
from typer.testing import CliRunner

from sop_verified.cli import app
from sop_verified.nexus.sop import SOP


@pytest.mark.parametrize("command", ["check", "repair"])
def test_state_commands_say_they_do_not_read_postgresql_yet(tmp_path: Path, command: str) -> None:
    data = tmp_path / "data"
    with scratch_schema() as schema:
        SOP.init(data, dsn=DSN, schema=schema)
        with SOP.boot(data) as sop:
            size = sop.log.size
        result = CliRunner().invoke(app, ["state", command, "--data-dir", str(data)])
        with SOP.boot(data) as sop:
            added = [json.loads(p) for _, _, p in sop.store.log.log_entries(size)]
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert f"`sop state {command}`" in said and f"schema `{schema}`" in said, said
    assert "`sop status` checks the state seal" in said
    assert {e["type"] for e in added} == {"boot", "attestation"}  # the boot's: nothing else
    assert not (data / "sop.db").exists()
