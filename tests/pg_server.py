"""The PostgreSQL server the tests run against, and fresh schemas on it.

The server is the machine's (127.0.0.1:5432, trust authentication, database
``test``) unless ``SOP_TEST_POSTGRES_DSN`` names another. A test that needs
it and finds it down FAILS, saying how to start it (``.ci/run`` does): it is
never skipped. Each test works in a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import psycopg
import pytest
from psycopg import sql

from sop_verified.storage.postgres import redact_dsn

__all__ = ["DSN", "START", "drop_schema", "fail_down", "new_schema_name", "scratch_schema"]

DSN = os.environ.get("SOP_TEST_POSTGRES_DSN", "host=127.0.0.1 port=5432 dbname=test user=postgres")
"""The PostgreSQL server the tests run against."""

START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


def fail_down(why: str) -> NoReturn:
    """Fail the test: the server is not answering (the message says how to start it)."""
    pytest.fail(
        f"PostgreSQL is not answering: {why}\nstart it with `{START}`"
        " (.ci/run does), or point SOP_TEST_POSTGRES_DSN at a server",
        pytrace=False,
    )


def new_schema_name() -> str:
    """A schema name no other test uses."""
    return f"sop_test_{secrets.token_hex(8)}"


def connect() -> psycopg.Connection[tuple[object, ...]]:
    """A plain autocommit session (no SOP functions, no seal journal): what an outsider has."""
    try:
        return psycopg.connect(DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        down = f"cannot connect to `{redact_dsn(DSN)}`: {str(exc).strip()}"
    return fail_down(down)


def drop_schema(schema: str) -> None:
    """Drop ``schema`` and everything in it (nothing when the server is down)."""
    try:
        conn = psycopg.connect(DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError:
        return  # the test failed already, saying so; nothing to drop
    with conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@contextmanager
def scratch_schema() -> Iterator[str]:
    """A fresh schema name for the block; the schema is dropped afterwards."""
    name = new_schema_name()
    try:
        yield name
    finally:
        drop_schema(name)
