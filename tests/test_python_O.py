"""Enforcement never relies on `assert` or icontract alone: deny-by-default holds under -O."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITES = [
    "tests/core/test_kernel.py",
    "tests/core/test_capability.py",
    "tests/nexus/test_sop.py",
    "tests/core/policy",
]
DENY_TESTS = (
    "deny or denied or denies or forbid or refused or revoked or expired or forged or not_ready"
)


def test_deny_by_default_tests_pass_under_python_O() -> None:
    single = ["-p", "no:cacheprovider", "-n", "0"]  # one process inside the parallel suite
    result = subprocess.run(
        [sys.executable, "-O", "-m", "pytest", *single, "-k", DENY_TESTS, *SUITES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    tail = result.stdout[-3000:]
    assert result.returncode == 0, tail
    passed = re.search(r"(\d+) passed", tail)
    assert passed is not None and int(passed.group(1)) >= 30, tail
    assert "failed" not in tail.splitlines()[-1]
