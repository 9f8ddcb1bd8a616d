"""Fixtures of the server tests: a prepared data directory and a running `sop serve`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from served import Prepared, Served, prepare


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    return prepare(tmp_path_factory.mktemp("served"))


@pytest.fixture(scope="module")
def served(prepared: Prepared) -> Iterator[Served]:
    server = Served(prepared.data_dir)
    yield server
    assert server.stop() == 0, server.stderr()


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return tmp_path


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Do not import the HTTP fuzzing module when slow tests are deselected.

    Its tests are all slow, yet building them (one hypothesis test per operation of
    the OpenAPI document) took about 3 s of every worker's collection in the README's
    test command, only for each to be deselected. ``-m slow`` (``.ci/run``) collects it.
    """
    if collection_path.name == "test_schemathesis.py" and config.getoption("markexpr") == (
        "not slow"
    ):
        return True
    return None
