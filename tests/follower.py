"""A `--follow` command run as a child process, stopped with Ctrl-C (SIGINT) as a user would.

The child gets SIGINT's default action back before it starts: a shell starts a
background job (``pytest ... &``) with SIGINT ignored, a child inherits that, and
Python then never raises KeyboardInterrupt, so the follower would not stop.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Mapping, Sequence

__all__ = ["read_lines", "start_follower"]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_follower(argv: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start ``argv`` with pipes for its output and SIGINT's default action."""
    return subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        preexec_fn=_default_sigint,  # noqa: PLW1509 - no threads of this test run it
    )


def read_lines(proc: subprocess.Popen[bytes], count: int, timeout: float) -> list[bytes]:
    """Up to ``count`` lines of the child's output, waiting at most ``timeout`` seconds."""
    assert proc.stdout is not None
    lines: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(lines) < count and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            lines.append(line.rstrip(b"\n"))
    return lines
