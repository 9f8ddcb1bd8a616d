"""SOP's side of the NATS sink's process (:mod:`sop_verified.nexus.nats_child`).

Projecting an entry and publishing its event cost about 40 µs of CPU; in
SOP's process that CPU is taken under the interpreter lock its deciding
threads share, and it cost 15 to 24 % of ``bench_e2e.py``'s throughput (ADR
0019). In a process of its own it runs on another core. :class:`NatsSinkProcess`
starts that process, wakes it after each commit (a byte on its standard input,
never blocking), keeps the counters it reports for ``sop status`` and
``/metrics``, logs what it logs, and starts it again when it dies (with the
sink's backoff): events wait in the log meanwhile, and a decision never waits
for any of it. Closing SOP closes the pipe; the child writes its cursor and
exits, and is killed if it has not within the sink's acknowledgement timeout.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import orjson

from sop_verified.events.nats_config import NatsSinkConfig
from sop_verified.events.nats_cursor import CURSOR_NAME, read_cursor
from sop_verified.events.nats_sink import FIRST_BACKOFF, NatsSinkStats
from sop_verified.nexus.nats_child import DSN_ENV

__all__ = ["NatsSinkProcess"]

_log = logging.getLogger("sop_verified.events.nats_sink")  # the sink's records, as in-process

_COUNTERS = ("connected", "outages", "down_seconds", "last_error", "resyncs")


class NatsSinkProcess:
    """The NATS sink, run in a child process (what SOP's ``nats_sink`` is by default)."""

    def __init__(
        self,
        data_dir: Path,
        config: NatsSinkConfig,
        *,
        events: Callable[[], int],
        dsn: str | None = None,
    ) -> None:
        """Prepare the sink of ``data_dir``'s events; :meth:`start` starts its process.

        Args:
            data_dir: the data directory (the child opens it read-only).
            config: the ``[events.nats]`` table.
            events: how many events the log has now (entries and checkpoints), for the lag.
            dsn: another address for the PostgreSQL database (``sop serve --dsn``).
        """
        self.config = config
        self._data_dir = data_dir
        self._dsn = dsn
        self._events = events
        self._acked = read_cursor(data_dir / CURSOR_NAME, config.stream)
        self._published = self._duplicates = 0
        self._reported: dict[str, Any] = {
            "connected": False,
            "outages": 0,
            "down_seconds": None,
            "last_error": None,
            "resyncs": 0,
        }
        self._restarts = 0
        self._stopping = False
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._stdin: int | None = None
        self._reader: threading.Thread | None = None
        self._exited = threading.Event()

    # ---- life cycle ------------------------------------------------------------------
    def start(self) -> None:
        """Start the child and the thread that reads what it reports."""
        self._reader = threading.Thread(
            target=self._supervise, name="sop-events-nats-process", daemon=True
        )
        self._reader.start()

    def close(self) -> None:
        """Stop the child: close its standard input, wait for it to write its cursor and
        exit, kill it past the acknowledgement timeout."""
        with self._lock:
            self._stopping = True
            proc, fd = self._proc, self._stdin
            self._stdin = None
            if fd is not None:  # under the lock, as wake() writes to it
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._exited.set()  # a supervisor waiting to restart stops waiting
        if proc is not None:
            try:
                proc.wait(self.config.ack_timeout_seconds + 5)
            except subprocess.TimeoutExpired:
                _log.warning("NATS sink: its process did not stop in time; killing it")
                proc.kill()
                proc.wait()
        if self._reader is not None:
            self._reader.join(10)

    def wake(self) -> None:
        """New entries committed: one byte to the child (never blocks: a full pipe already
        holds a wake-up it has not read).

        Under the lock that closing the pipe takes: a descriptor closed between reading
        it and writing to it could already be another file's.
        """
        with self._lock:
            fd = self._stdin
            if fd is None:
                return
            with contextlib.suppress(OSError):  # BlockingIOError: one is pending; EPIPE: gone
                os.write(fd, b"\x01")

    @property
    def stopping(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._stopping

    @property
    def cursor(self) -> int:
        """Events acknowledged as far as SOP knows (the durable cursor at start)."""
        return self._acked

    @property
    def pid(self) -> int | None:
        """The child's process id (None before it started or between two of them)."""
        proc = self._proc
        return None if proc is None or proc.returncode is not None else proc.pid

    @property
    def restarts(self) -> int:
        """How many times the child died and was started again."""
        return self._restarts

    def stats(self) -> NatsSinkStats:
        """The sink's counters as the child last reported them, with the log's events now."""
        try:
            size = self._events()
        except Exception:  # the log is closing: what was acknowledged
            size = self._acked
        r = self._reported
        return NatsSinkStats(
            stream=self.config.stream,
            servers=self.config.shown_servers,
            size=size,
            acked=self._acked,
            connected=bool(r["connected"]),
            outages=int(r["outages"]),
            down_seconds=r["down_seconds"],
            last_error=r["last_error"],
            published=self._published,
            duplicates=self._duplicates,
            resyncs=int(r["resyncs"]),
            restarts=self._restarts,
        )

    def acked(self, acked: int, *, stored: int, duplicates: int) -> None:
        """The child says events ``[0, acked)`` are in the stream."""
        self._acked = acked
        self._published += stored
        self._duplicates += duplicates

    # ---- the supervisor thread ---------------------------------------------------------
    def _supervise(self) -> None:
        backoff = FIRST_BACKOFF
        while not self._stopping:
            started = time.monotonic()
            try:
                code = self._run_child()
            except OSError as exc:  # the interpreter could not be started
                code = None
                _log.warning("NATS sink: cannot start its process: %s", exc)
            if self.stopping:  # close() while it ran
                return
            if time.monotonic() - started > self.config.max_backoff_seconds:
                backoff = FIRST_BACKOFF  # it ran a good while: this is a new failure
            self._restarts += 1
            self._reported["connected"] = False
            _log.warning(
                "NATS sink: its process exited (status %s); starting it again in %.1f s;"
                " decisions go on and events wait in the log",
                code,
                backoff,
            )
            if self._exited.wait(backoff):
                return
            backoff = min(backoff * 2, float(self.config.max_backoff_seconds))

    def _run_child(self) -> int:
        env = dict(os.environ)
        env.pop(DSN_ENV, None)
        if self._dsn is not None:
            env[DSN_ENV] = self._dsn
        command = [sys.executable, "-m", "sop_verified.nexus.nats_child"]
        proc = subprocess.Popen(  # noqa: S603 - fixed argv: this interpreter and our module
            [*command, "--data-dir", str(self._data_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        if proc.stdin is None or proc.stdout is None:  # both piped above: never
            proc.kill()
            return proc.wait()
        fd = os.dup(proc.stdin.fileno())  # written raw (no buffer), never blocking
        proc.stdin.close()
        os.set_blocking(fd, False)
        with self._lock:
            if self._stopping:  # close() came while it started
                os.close(fd)
                proc.wait()
                return proc.returncode
            self._proc, self._stdin = proc, fd
        self._read(proc.stdout)
        code = proc.wait()
        with self._lock:
            if self._stdin == fd:
                self._stdin = None
                os.close(fd)
        return code

    def _read(self, stdout: IO[bytes]) -> None:
        for line in stdout:
            try:
                message = orjson.loads(line)
            except orjson.JSONDecodeError:
                _log.warning("NATS sink: its process wrote a line that is not JSON")
                continue
            if not isinstance(message, dict):
                continue
            if "acked" in message:  # an acknowledgement: the broker is there
                self._reported = {**self._reported, "connected": True, "down_seconds": None}
                self.acked(
                    int(message["acked"]),
                    stored=int(message.get("stored", 0)),
                    duplicates=int(message.get("duplicates", 0)),
                )
            elif isinstance(stats := message.get("stats"), dict):
                self._reported = {key: stats.get(key) for key in _COUNTERS}
            elif isinstance(record := message.get("log"), dict):
                level = record.get("level")
                _log.log(
                    level if isinstance(level, int) else logging.WARNING,
                    "%s",
                    str(record.get("message", "")),
                )
