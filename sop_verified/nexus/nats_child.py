"""The NATS sink's own process: ``python -m sop_verified.nexus.nats_child --data-dir D``.

SOP starts it (:mod:`sop_verified.nexus.nats_process`) so that projecting the
log and publishing take no CPU under the interpreter lock SOP's deciding
threads share (ADR 0019). It reads the data directory read-only, as ``sop
events tail --follow`` does (:class:`~sop_verified.nexus.event_ops.DataDirEvents`:
every checkpoint verified, every entry proved under it before it becomes an
event), and runs the same :class:`~sop_verified.events.nats_sink.NatsSink`,
which writes its durable cursor in the data directory.

Its pipes are its whole interface:

- **standard input**: any byte says "new entries committed" (the sink looks at
  the log now instead of at its next poll); end of file, which is also what the
  death of SOP's process gives, says stop. SIGINT is ignored (a terminal's
  Ctrl-C reaches SOP, which closes the pipe); SIGTERM stops it too.
- **standard output**: JSON lines for SOP: ``{"acked": n, "stored": s,
  "duplicates": d}`` at each acknowledgement, ``{"stats": {...}}`` every
  :data:`REPORT_SECONDS` and when the broker comes or goes, and ``{"log":
  {"level": L, "message": M}}`` for each log record, which SOP logs as its own
  (messages are scrubbed of credentials by the sink before they are logged).

A PostgreSQL address given to SOP instead of the configured one
(``sop serve --dsn``) comes in the environment variable :data:`DSN_ENV`, never
on the command line, where any user of the machine could read it.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from sop_verified.events.model import Event
from sop_verified.events.nats_config import NatsSinkConfig
from sop_verified.events.nats_cursor import CURSOR_NAME
from sop_verified.events.nats_sink import NatsSink
from sop_verified.nexus.event_ops import DataDirEvents

__all__ = ["DSN_ENV", "REFRESH_SECONDS", "REPORT_SECONDS", "main"]

DSN_ENV = "SOP_EVENTS_NATS_DSN"
"""The environment variable that carries ``sop serve --dsn``'s address to the child."""

REPORT_SECONDS = 0.25
"""How often the child reports the sink's counters to SOP."""

REFRESH_SECONDS = 0.005
"""The least time between two openings of the log to see new entries."""


class _Out:
    """Standard output as JSON lines, one writer at a time; a closed pipe is ignored."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        line = orjson.dumps(message) + b"\n"
        with self._lock:
            try:
                self._stream.write(line)
                self._stream.flush()
            except (OSError, ValueError):  # SOP is gone: end of file on stdin follows
                pass


class _ToParent(logging.Handler):
    """Log records, sent to SOP to be logged there (its format, its destination)."""

    def __init__(self, out: _Out) -> None:
        super().__init__(logging.INFO)
        self._out = out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: say so rather than lose it
            message = f"unformattable log record from `{record.name}`"
        self._out.send({"log": {"level": record.levelno, "message": message}})


class _Following:
    """The data directory's events, reopened at most every :data:`REFRESH_SECONDS` (an
    ``EventSource``; the sink's thread and the reporter both ask its size)."""

    def __init__(self, events: DataDirEvents) -> None:
        self._events = events
        self._lock = threading.Lock()
        self._at = -REFRESH_SECONDS
        self._size = 0

    def size(self) -> int:
        with self._lock:
            now = time.monotonic()
            if now - self._at >= REFRESH_SECONDS:
                self._size = self._events.refresh()
                self._at = now
            return self._size

    def position_of(self, event_id: str) -> int | None:
        with self._lock:
            return self._events.position_of(event_id)

    def entry_position(self, index: int) -> int:
        with self._lock:
            return self._events.entry_position(index)

    def read(self, start: int, end: int) -> list[Event]:
        with self._lock:
            return self._events.read(start, end)


class _ReportingSink(NatsSink):
    """The sink, telling SOP each acknowledgement as it comes."""

    out: _Out

    def acked(self, acked: int, *, stored: int, duplicates: int) -> None:
        super().acked(acked, stored=stored, duplicates=duplicates)
        self.out.send({"acked": acked, "stored": stored, "duplicates": duplicates})


def _report(sink: NatsSink, out: _Out, stop: threading.Event) -> None:
    while not stop.wait(REPORT_SECONDS):
        try:
            stats = dataclasses.asdict(sink.stats())
        except Exception as exc:  # the log is being reopened or closed: the next turn
            logging.getLogger(__name__).debug("no report this turn: %s", exc)
        else:
            out.send({"stats": stats})


def run(data_dir: Path, dsn: str | None, stdin: BinaryIO, out: _Out) -> int:
    """Publish ``data_dir``'s events until ``stdin`` ends; return the exit status."""
    with DataDirEvents(data_dir, dsn=dsn) as events:
        events_config = events.config.events
        nats: NatsSinkConfig | None = None if events_config is None else events_config.nats
        if nats is None:
            logging.getLogger(__name__).error("`%s` has no [events.nats] table", data_dir)
            return 2
        sink = _ReportingSink(_Following(events), nats, data_dir / CURSOR_NAME)
        sink.out = out
        stop = threading.Event()
        reporter = threading.Thread(
            target=_report, args=(sink, out, stop), name="sop-events-nats-report", daemon=True
        )
        sink.start()
        reporter.start()
        try:
            while stdin.read1(4096):  # type: ignore[attr-defined]  # a buffered reader's read1
                sink.wake()
        except (OSError, SystemExit):  # SIGTERM, or a broken pipe: stop as at end of file
            pass
        finally:
            stop.set()
            sink.close()  # writes the cursor
            out.send({"stats": dataclasses.asdict(sink.stats())})
    return 0


def main(argv: list[str] | None = None) -> int:
    """The child's entry point (SOP starts it; not a command for people)."""
    parser = argparse.ArgumentParser(prog="python -m sop_verified.nexus.nats_child")
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is SOP's to handle: it closes stdin
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    out = _Out(sys.stdout.buffer)
    handler = _ToParent(out)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    dsn = os.environ.pop(DSN_ENV, None)
    try:
        return run(args.data_dir, dsn, sys.stdin.buffer, out)
    except Exception as exc:  # boot-like failures: SOP logs them and starts it again later
        logging.getLogger(__name__).error(
            "the NATS sink's process stopped: %s: %s", type(exc).__name__, exc
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
