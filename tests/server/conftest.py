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
