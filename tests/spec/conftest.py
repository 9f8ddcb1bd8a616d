"""Shared, expensive fixtures of the spec/proofs tests: each full check runs once a session."""

from __future__ import annotations

import time

import pytest

from sop_verified.proofs.check import run_all
from sop_verified.proofs.results import CheckReport


@pytest.fixture(scope="session")
def proof_report() -> tuple[CheckReport, float]:
    """The full check of the real model, and its wall-clock time in seconds."""
    started = time.perf_counter()
    report = run_all()
    return report, time.perf_counter() - started


@pytest.fixture(scope="session")
def revoke_mutant_report() -> CheckReport:
    """The full check of the model with `revoke_forgets_descendants` seeded in."""
    return run_all(frozenset({"revoke_forgets_descendants"}))
