"""The crash test of issue 14: kill -9 `sop serve` under load, restart it, lose nothing.

The harness is :mod:`serve_crash` (run it by hand with ``--rounds``, ``--clients``,
``--seed``). Here: 20 kills at seeded random moments under 16 concurrent mutual-TLS
clients; the seed is printed, and ``SOP_CRASH_SEED`` replays it
(``SOP_CRASH_ROUNDS`` changes the number of kills). The counts print with ``-s``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest
from serve_crash import VERIFY_EVERY, format_report, run_crash

ROUNDS = int(os.environ.get("SOP_CRASH_ROUNDS", "20"))
CLIENTS = 16


@pytest.mark.slow
def test_kill_9_under_load_loses_no_acknowledged_decision_and_duplicates_no_key(
    tmp_path: Path,
) -> None:
    seed = int(os.environ.get("SOP_CRASH_SEED") or secrets.randbits(32))
    print(f"\nserve crash seed {seed} (replay with SOP_CRASH_SEED={seed})")
    report = run_crash(tmp_path, rounds=ROUNDS, clients=CLIENTS, seed=seed, progress=print)
    text = format_report(report)
    print(text)
    assert not report.failures, text
    assert report.rounds == ROUNDS
    assert report.allowed > 0 and report.denied > 0, text
    assert report.acknowledged == report.sent == report.entries, text  # every key: one entry
    assert report.retried > 0, f"no kill caught a request in flight: {text}"
    assert report.resent > 0 and report.replayed >= report.resent, text
    assert report.receipts_verified >= report.acknowledged, text
    assert report.log_verifies == ROUNDS // VERIFY_EVERY + 1, text
