"""Fixtures: a booted SOP with the demo's sound policy set, tokens for DRAC, EMP and CSP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from protocol_env import Env, make_env


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """One booted SOP per test module (tests use distinct sessions and subjects)."""
    e = make_env(tmp_path_factory.mktemp("protocols"))
    yield e
    e.close()


@pytest.fixture
def own_env(tmp_path: Path) -> Iterator[Env]:
    """A booted SOP of the test's own (for reboots and tampering with the disk)."""
    e = make_env(tmp_path)
    yield e
    e.close()
