"""``sop serve`` in a child process for ``bench_http.py``: its data directory, its CPU, its metrics.

:func:`prepare` makes a data directory as ``bench_e2e.py`` does (the demo's
sound policy set active, one DRAC capability for ``artifacts/drac/**``).
:class:`ServeProcess` starts ``python3 -m sop_verified.cli serve ... --json``,
reads the one JSON line that names its listeners, reads the child's CPU time
from ``/proc/<pid>/stat`` and stops it with SIGTERM (a clean stop: exit 0).
:func:`scrape` reads the decision counters and the log's size from the read
plane's ``/metrics``.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from e2e_scenario import Scenario

__all__ = ["ServeProcess", "get", "post", "prepare", "scrape"]

_TICK = os.sysconf("SC_CLK_TCK")
_SAMPLE = re.compile(r'^sop_decisions_total\{[^}]*effect="(\w+)"[^}]*\} ([0-9.e+]+)$', re.M)
_LOG_SIZE = re.compile(r"^sop_log_size ([0-9.e+]+)$", re.M)
_BATCH = re.compile(r"^sop_decision_batch_size_(sum|count) ([0-9.e+]+)$", re.M)


def prepare(root: Path) -> tuple[Path, str]:
    """A data directory in ``root/data`` ready to decide, and DRAC's capability token.

    Args:
        root: an empty directory.

    Returns:
        The data directory and the capability token.
    """
    scenario = Scenario(root, clients=1)
    token = scenario.token
    scenario.close()
    return root / "data", token


class ServeProcess:
    """A running ``sop serve`` child: its listeners, its CPU time, a clean stop."""

    def __init__(
        self,
        data_dir: Path,
        *,
        tls: bool = False,
        echo: bool = True,
        timeout: float = 60.0,
        launcher: list[str] | None = None,
    ) -> None:
        """Start ``sop serve`` on ephemeral loopback ports and wait for its listeners.

        Args:
            data_dir: a prepared data directory.
            tls: mutual TLS on the bridge plane (else ``--unsafe-no-tls``).
            echo: turn the benchmark's echo route on (``--bench-echo``).
            timeout: seconds to wait for the listeners.
            launcher: the command that takes the CLI's arguments (default
                ``python3 -m sop_verified.cli``; ``bench_postgres.py`` runs it under probes).

        Raises:
            RuntimeError: the server exited or did not report its listeners in time.
        """
        cmd = [*(launcher or [sys.executable, "-m", "sop_verified.cli"]), "serve"]
        cmd += ["--data-dir", str(data_dir)]
        cmd += ["--bridge", "127.0.0.1:0", "--read", "127.0.0.1:0", "--json"]
        cmd += [] if tls else ["--unsafe-no-tls"]
        cmd += ["--bench-echo"] if echo else []
        # stderr to a file: a pipe nobody reads would block the server once it filled
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self._stderr, env=os.environ.copy()
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else b""
        if not line.startswith(b"{"):
            self.proc.kill()
            self.proc.communicate()
            self._stderr.seek(0)
            err = self._stderr.read().decode(errors="replace")
            raise RuntimeError(f"sop serve did not start: {line!r} {err[-2000:]}")
        self.listeners: dict[str, Any] = json.loads(line)
        self.bridge: str = self.listeners["bridge"]
        self.read: str = self.listeners["read"]

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the server process has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14, 15)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then wait: the queue drains and SOP closes. Returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
        return self.proc.returncode


def get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """GET ``url``: the status and the body (an error status is returned, not raised)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return int(answer.status), bytes(answer.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def post(
    url: str, body: bytes, headers: dict[str, str] | None = None, timeout: float = 30.0
) -> tuple[int, bytes]:
    """POST ``body`` to ``url`` (JSON unless ``headers`` say otherwise): the status and the body."""
    sent = headers if headers is not None else {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=body, headers=sent, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return int(answer.status), bytes(answer.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def scrape(read_url: str) -> dict[str, float]:
    """Decisions by effect and the log's size, from the read plane's ``/metrics``."""
    _, body = get(read_url + "/metrics")
    text = body.decode()
    counts: dict[str, float] = {"ALLOW": 0.0, "DENY": 0.0}
    for effect, value in _SAMPLE.findall(text):
        counts[effect] = counts.get(effect, 0.0) + float(value)
    size = _LOG_SIZE.search(text)
    counts["log_size"] = float(size.group(1)) if size else -1.0
    for which, value in _BATCH.findall(text):
        counts[f"batch_{which}"] = float(value)
    counts["at"] = time.time()
    return counts
