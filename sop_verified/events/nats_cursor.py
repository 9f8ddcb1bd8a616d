"""The NATS sink's durable cursor: how many of the log's events the broker acknowledged.

Events are counted by position (entries and checkpoints, in log order:
:mod:`sop_verified.events.model`); a cursor of the first format, which counted
entries only, is not read (the sink learns where it is from the stream).

A small JSON file in the data directory, ``events-nats.cursor``, replaced
atomically (temporary file, fsync, rename, fsync of the directory) so that it
survives a ``kill -9`` or a power cut whole or not at all. It is a hint, not
the truth: at every (re)connection the sink asks the stream where it really is
(:mod:`sop_verified.events.nats_sink`), and uses the cursor only when the stream
cannot say (its last message was purged or expired) and for the lag it reports
before the broker answers.

Why a file and not a row in the store: every derived table of the store is
authenticated against the signed log by the state seal (INV-11), and a cursor is
not derived from the log; writing it would also take the store's writer lock,
which the decision path holds while it commits. The file keeps the sink off the
decision path entirely, and each replica of a shared PostgreSQL log has its own.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from sop_verified.tools.private_fs import write_private

__all__ = ["CURSOR_FORMAT", "CURSOR_NAME", "read_cursor", "write_cursor"]

CURSOR_NAME = "events-nats.cursor"
"""The cursor's file name in the data directory."""

CURSOR_FORMAT = "sop-events-nats-cursor/v2"

_log = logging.getLogger(__name__)


def read_cursor(path: Path, stream: str) -> int:
    """The number of events the broker acknowledged into ``stream``, as last written.

    A missing file, a file for another stream or one that does not parse is 0 (the
    sink then learns where it is from the stream itself); the last two are logged.

    Args:
        path: The cursor file.
        stream: The configured stream.

    Returns:
        The count of acknowledged events (the position of the next one to publish).
    """
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return 0
    except (OSError, ValueError) as exc:
        _log.warning("ignoring the NATS sink's cursor `%s`: %s", path, exc)
        return 0
    acked = data.get("acked") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get("format") != CURSOR_FORMAT or type(acked) is not int:
        _log.warning("ignoring the NATS sink's cursor `%s`: not a `%s`", path, CURSOR_FORMAT)
        return 0
    if data.get("stream") != stream or acked < 0:
        _log.info("the NATS sink's cursor `%s` is for another stream: starting from 0", path)
        return 0
    return acked


def write_cursor(path: Path, stream: str, acked: int) -> None:
    """Replace the cursor atomically and durably.

    Args:
        path: The cursor file.
        stream: The stream the count is for.
        acked: Events ``[0, acked)`` were acknowledged by the broker.

    Raises:
        OSError: the file could not be written.
    """
    body = {"format": CURSOR_FORMAT, "stream": stream, "acked": acked}
    write_private(path, json.dumps(body, sort_keys=True).encode("ascii") + b"\n")
