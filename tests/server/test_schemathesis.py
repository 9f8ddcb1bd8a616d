"""Schemathesis against the served OpenAPI document, with a client certificate: no 5xx, conforming.

Every operation of the bridge plane (mutual TLS) and the read plane is called
with inputs generated from the document; each response must not be a server
error and must match the document (status, content type, headers, schema). The default
run is bounded (a few examples per operation); the slow suite runs many more.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance
from schemathesis.specs.openapi.checks import negative_data_rejection
from served import Prepared, Served, prepare

from sop_verified.server.openapi import openapi_document

# Property-based fuzzing of every operation: about 22 s of the README's test command;
# `.ci/run` runs it in its slow step.
pytestmark = pytest.mark.slow

schema = schemathesis.openapi.from_dict(openapi_document())
READ_PLANE = ("/health", "/metrics", "/openapi.json", "/log/", "/v1/receipts")


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Prepared]]:
    prepared = prepare(tmp_path_factory.mktemp("fuzz"))
    server = Served(prepared.data_dir, "--no-admin-socket")
    yield server, prepared
    assert server.stop() == 0, server.stderr()


def _call(case: schemathesis.Case, fuzzed: tuple[Served, Prepared]) -> None:
    server, prepared = fuzzed
    cert, key, ca = prepared.client()
    on_read = case.path.startswith(READ_PLANE)
    tls = {} if on_read else {"cert": (str(cert), str(key)), "verify": str(ca)}
    with requests.Session() as session:
        response = case.call(
            base_url=server.read if on_read else server.bridge, session=session, **tls
        )
    assert response.status_code < 500 or response.status_code == 501, response.text[:500]
    # What the issue asks: no 5xx and every response as documented (status, content type,
    # headers, body schema). Schemathesis's two acceptance checks are left out: a generated
    # "valid" request is often refused (an unknown action, a path outside every scope: the
    # schema cannot say all the kernel checks), and its negative cases mutate headers in ways
    # a refusal does not always follow (a header that is merely unusual is not an error).
    case.validate_response(
        response, excluded_checks=[positive_data_acceptance, negative_data_rejection]
    )


@schema.parametrize()
@settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_every_operation_answers_without_5xx_and_as_documented(
    case: schemathesis.Case, fuzzed: tuple[Served, Prepared]
) -> None:
    _call(case, fuzzed)


@schema.parametrize()
@settings(
    max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
def test_many_generated_calls_answer_without_5xx_and_as_documented(
    case: schemathesis.Case, fuzzed: tuple[Served, Prepared]
) -> None:
    _call(case, fuzzed)
