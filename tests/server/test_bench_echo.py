"""The benchmark's echo route exists only when asked for: off by default, hidden, not in OpenAPI."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from sop_verified.server.bench_echo import ECHO_PATH
from sop_verified.server.openapi import openapi_document
from sop_verified.server.serve import ServeSettings, bridge_app

BODY = b'{"request_id": "r1", "context": {"size_bytes": 4096, "tags": ["a", "b"]}}'


def _client(**settings: Any) -> TestClient:
    state: Any = SimpleNamespace()  # the echo route and a 404 never reach SOP
    return TestClient(bridge_app(state, ServeSettings(Path("unused"), **settings)))


def test_echo_route_is_absent_by_default() -> None:
    assert ServeSettings(Path("unused")).bench_echo is False
    answer = _client().post(ECHO_PATH, content=BODY)
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"


def test_echo_route_answers_the_parsed_body_when_on() -> None:
    answer = _client(bench_echo=True).post(ECHO_PATH, content=BODY)
    assert answer.status_code == 200
    assert answer.json() == {
        "request_id": "r1",
        "context": {"size_bytes": 4096, "tags": ["a", "b"]},
    }


@pytest.mark.parametrize(
    ("body", "status"),
    [(b'{"a": 1, "a": 2}', 400), (b"not json", 400), (b'"' + b"x" * 70_000 + b'"', 413)],
)
def test_echo_route_refuses_what_the_bridge_refuses(body: bytes, status: int) -> None:
    answer = _client(bench_echo=True).post(ECHO_PATH, content=body)
    assert answer.status_code == status


def test_echo_route_is_not_in_the_openapi_document() -> None:
    assert not [p for p in openapi_document()["paths"] if p.startswith("/bench")]


def test_bench_echo_option_is_hidden_from_help() -> None:
    from sop_verified.cli import app

    shown = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "--unsafe-no-tls" in shown.output
    assert "--bench-echo" not in shown.output
