"""`sop log show [INDEX | --tail N] [--follow]`: the log's entries, decoded, for people and scripts.

Each entry is read through the authenticated path
(:meth:`~sop_verified.nexus.data_dir_log.DataDirLog.entry`): its leaf hash
computed from the stored payload and proved included under the latest
checkpoint, whose signature was verified against the public checkpoint key.
An entry that does not verify is never shown: the entries before it are, and
the command ends with exit 1. The data directory is opened read-only; nothing
in it changes. Text: one line per entry (index, time in ISO 8601 UTC, type, a
summary of what it records); ``sop log show INDEX`` adds the whole entry.
``--json``: one JSON object per line (JSON Lines) with ``index``, ``type``,
``time``, ``summary`` and the ``entry`` itself.
"""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import orjson
import typer

from sop_verified.cli_entries import entry_line
from sop_verified.cli_support import DEFAULT_DATA_DIR, DataDir, require_data_dir
from sop_verified.errors import InputError

__all__ = ["POLL_SECONDS", "log_show"]

POLL_SECONDS = 0.5
"""How often ``--follow`` looks for new entries."""


def log_show(
    index: Annotated[
        int | None, typer.Argument(help="Show this entry, in full (with --follow: from it on).")
    ] = None,
    tail: Annotated[
        int | None, typer.Option("--tail", "-n", min=0, help="Show the last N entries.")
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep showing new entries (Ctrl-C stops).")
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON object per entry and line (JSON Lines).")
    ] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Show log entries decoded (type, time, summary; the entry with --json), each proved in
    the signed log first; exit 1 at an entry that does not verify. Read-only."""
    from sop_verified.nexus.data_dir_log import DataDirLog  # noqa: PLC0415 - keep --help fast

    if index is not None and tail is not None:
        raise InputError("give an INDEX or `--tail N`, not both")
    if index is not None and index < 0:
        raise InputError(f"entry index `{index}` is negative", accepted="0 or more")
    require_data_dir(data_dir)
    try:
        with DataDirLog(data_dir) as opened:
            size = opened.signed_size()
            start = _start(index, tail, size)
            full = index is not None and not follow
            end = start + 1 if full else size
            while True:
                for at in range(start, end):
                    _show(at, opened.entry(at), json_output=json_output, full=full)
                start = end
                if not follow:
                    return
                time.sleep(POLL_SECONDS)
                opened.refresh()  # refuses a log cut back under the follower (INV-5)
                end = opened.signed_size()
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def _start(index: int | None, tail: int | None, size: int) -> int:
    """The first index to show; an INDEX the signed log does not cover is bad input."""
    if index is None:
        return 0 if tail is None else max(0, size - tail)
    if index >= size:
        covered = "no entry yet" if size == 0 else f"entries 0 to {size - 1}"
        raise InputError(
            f"no entry `{index}` in the log: its signed checkpoint covers {covered}",
            accepted=f"an index below {size}" if size else "an index, once entries are logged",
        )
    return index


def _show(index: int, entry: dict[str, Any], *, json_output: bool, full: bool) -> None:
    line = entry_line(index, entry)
    if json_output:
        text = orjson.dumps({**line, "entry": entry}).decode()
    else:
        text = f"{index:>8}  {line['time'] or '-':<20}  {line['type']:<24}  {line['summary']}"
        if full:
            text += "\n" + orjson.dumps(entry, option=orjson.OPT_INDENT_2).decode()
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
