"""Shared fixtures of the proof-gate tests: one warm gate per session, obligation builders."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sop_verified.core.proofgate import GateConfig, InMemoryVerdictStore, Z3ProofGate


@pytest.fixture(scope="session")
def shared_gate() -> Iterator[Z3ProofGate]:
    """A warm two-worker gate with default settings, shared by the read-only tests."""
    with Z3ProofGate(GateConfig(workers=2)) as gate:
        gate.warm()
        yield gate


@pytest.fixture
def fresh_gate() -> Iterator[Z3ProofGate]:
    """A one-worker gate with its own store and tight caps, for tests that break things."""
    config = GateConfig(workers=1, rlimit=2_000_000, wall_seconds=5.0, cpu_seconds=5)
    with Z3ProofGate(config, store=InMemoryVerdictStore()) as gate:
        yield gate
