"""The inspection commands on a data directory whose state is in PostgreSQL: read-only there too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from inspected import LISTED_AT, make_data_dir, tree
from pg_server import DSN, connect, drop_schema, new_schema_name
from psycopg import sql
from typer.testing import CliRunner

from sop_verified.cli import app
from sop_verified.nexus.cap_ops import list_capabilities
from sop_verified.nexus.status_ops import inspect_status

runner = CliRunner()


@pytest.fixture(scope="module")
def pg_data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, dict[str, str]]]:
    schema = new_schema_name()
    data = tmp_path_factory.mktemp("pg-inspect") / "data"
    try:
        ids = make_data_dir(data, dsn=DSN, schema=schema)
        yield data, schema, ids
    finally:
        drop_schema(schema)


def test_status_cap_list_and_log_show_read_a_postgresql_state(
    pg_data: tuple[Path, str, dict[str, str]],
) -> None:
    data, _, ids = pg_data
    before = tree(data)
    status = inspect_status(data)
    assert status["health"] == "READY", status["reason"]
    assert status["services"]["storage"]["detail"].startswith("postgresql schema sop_test_")
    rows = {r["id"]: r for r in list_capabilities(data, LISTED_AT)["capabilities"]}
    assert rows[ids["emp.child"]]["status"] == "revoked"
    assert rows[ids["drac.grandchild"]]["depth"] == 2
    result = runner.invoke(app, ["log", "show", "--json", "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    shown = [json.loads(line) for line in result.output.splitlines()]
    assert shown[-1]["type"] == "decision" and len(shown) == status["log_size"]
    assert tree(data) == before


def test_a_deleted_revocation_row_in_postgresql_is_failed(
    pg_data: tuple[Path, str, dict[str, str]],
) -> None:  # spec: INV-11
    data, schema, _ = pg_data
    conn = connect()
    table = sql.Identifier(schema, "revocations")
    try:
        with conn.transaction():  # an outsider: triggers off, a row gone, triggers back on
            conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(table))
            conn.execute(sql.SQL("CREATE TEMP TABLE kept AS SELECT * FROM {}").format(table))
            conn.execute(sql.SQL("DELETE FROM {}").format(table))
            conn.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(table))
        status = inspect_status(data)
        assert status["health"] == "FAILED"
        assert status["services"]["state"]["health"] == "FAILED"
        assert "table `revocations`" in status["reason"], status["reason"]
    finally:
        with conn.transaction():  # put it back for the other tests of this module
            conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(table))
            conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM kept").format(table))
            conn.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(table))
        conn.close()
    assert inspect_status(data)["health"] == "READY"
