"""`sop events tail`: SOP's events read from the log, for people and scripts.

The same CloudEvents in-process subscribers and sinks get (one per log entry
and one per signed checkpoint, in log order, the telemetry boundary applied),
read from the data directory without booting SOP and without changing a byte of
it (:mod:`sop_verified.nexus.event_ops`). ``--json`` prints each event's bytes
on a line of its own (JSON Lines); the text form is one line per event: log
index (a checkpoint: its size, ``@size``), time, type and a short summary.
``--follow`` polls for new entries until interrupted (Ctrl-C exits 0). A log
entry that does not verify ends the command with exit 1, like ``sop log
verify``; bad input exits 2.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from sop_verified.cli_support import (
    DEFAULT_DATA_DIR,
    DataDir,
    ExitCode,
    fail,
    guarded_stream,
    require_data_dir,
)
from sop_verified.errors import InputError, IntegrityError, VerificationError

if TYPE_CHECKING:
    from sop_verified.events.model import Event
    from sop_verified.nexus.event_ops import DataDirEvents

__all__ = ["register"]

events_app = typer.Typer(no_args_is_help=True, help="The Ops_Event_Bus: events from the log.")

_BATCH = 256
POLL_SECONDS = 0.5
"""How often ``--follow`` looks for new entries."""


def _types(values: list[str]) -> frozenset[str] | None:
    """``--type`` values as event types: ``sop.decision.v1``, or just ``decision``."""
    from sop_verified.events.subscribers import EVENT_TYPES  # noqa: PLC0415 - keep --help fast

    if not values:
        return None
    out = set()
    for value in values:
        name = value if value.startswith("sop.") else f"sop.{value}.v1"
        if name not in EVENT_TYPES:
            raise InputError(
                f"unknown event type `{value}`",
                where="--type",
                accepted=", ".join(sorted(EVENT_TYPES)),
            )
        out.add(name)
    return frozenset(out)


def events_tail(
    from_index: Annotated[
        int,
        typer.Option(
            "--from",
            help="The first log index to show; negative counts back from the end (-10: the"
            " last ten entries).",
        ),
    ] = 0,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep polling for new entries (Ctrl-C stops).")
    ] = False,
    types: Annotated[
        list[str] | None,
        typer.Option(
            "--type",
            "-t",
            help="Only this event type (`decision` or `sop.decision.v1`; repeatable).",
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print each CloudEvent on one line (JSON Lines).")
    ] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Print SOP's events (one CloudEvent per log entry and per signed checkpoint), read-only;
    `--follow` for new ones."""
    from sop_verified.nexus.event_ops import DataDirEvents  # noqa: PLC0415 - keep --help fast

    wanted = _types(types or [])
    require_data_dir(data_dir)
    try:
        with DataDirEvents(data_dir) as source:
            _tail(source, from_index, follow=follow, wanted=wanted, json_output=json_output)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    except (IntegrityError, VerificationError) as exc:  # the log failed its check: exit 1
        fail(f"log check failed: {exc}", ExitCode.FAILED, stage="integrity", error="log_check")


def _tail(
    source: DataDirEvents,
    start: int,
    *,
    follow: bool,
    wanted: frozenset[str] | None,
    json_output: bool,
) -> None:
    size = source.refresh()
    first = max(0, source.signed_size() + start) if start < 0 else start
    at = source.entry_position(first)  # entry `first`'s event; checkpoints before it are not shown
    while True:
        while at < size:
            events = _read(source, at, min(size, at + _BATCH))
            _show(events, wanted, json_output)
            at += len(events)  # short only before an event that fails
        if not follow:
            return
        time.sleep(POLL_SECONDS)
        size = source.refresh()


def _read(source: DataDirEvents, start: int, end: int) -> list[Event]:
    """Events at positions ``[start, end)``; when one does not verify, the ones before it are
    returned first (and shown) and the next read, starting at it, raises."""
    try:
        return source.read(start, end)
    except IntegrityError:
        out: list[Event] = []
        for index in range(start, end):
            try:
                out += source.read(index, index + 1)
            except IntegrityError:
                if not out:
                    raise
                return out
        return out


def _show(events: list[Event], wanted: frozenset[str] | None, json_output: bool) -> None:
    lines = []
    for event in events:
        if wanted is not None and event.type not in wanted:
            continue
        lines.append(event.body.decode() if json_output else _line(event))
    if lines:
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()


def _line(event: Event) -> str:
    """``index  time  type  summary`` for people (a checkpoint's ``index`` is ``@size``)."""
    from sop_verified.events.projection import INDEX_EXTENSION, SIZE_EXTENSION  # noqa: PLC0415

    body = orjson.loads(event.body)
    kind = event.type.removeprefix("sop.").removesuffix(".v1")
    when = body.get("time", "-")
    where = f"@{body[SIZE_EXTENSION]}" if SIZE_EXTENSION in body else body[INDEX_EXTENSION]
    return f"{where:>8}  {when:<20}  {kind:<24}  {summary(kind, body['data'])}"


def summary(kind: str, data: dict[str, Any]) -> str:
    """A short, one-line account of an event's data (only what the event itself carries)."""
    if kind == "decision":
        request = data.get("request")
        reasons = data.get("reasons") or []
        why = f" ({reasons[0]['stage']}/{reasons[0]['code']})" if reasons else ""
        if not request:
            return f"{data['effect']} a request that did not parse{why}"
        what = f"{request['action']} {request['resource']} by {request['principal']}"
        return f"{data['effect']} {what}{why}"
    if kind == "persist.effect":
        where = f"{data.get('scope', '')}:{data.get('name', '')}".strip(":")
        return f"{data['op']} {data['outcome']} {where}".rstrip()
    if kind == "boot":
        manifest = data["manifest"]
        return f"{manifest['health']} config {manifest.get('config_digest') or '-'}"
    if kind == "checkpoint":
        return f"size {data['size']}, root {data['root']}"
    if kind == "attestation":
        statement = data.get("statement") or {}
        return f"{data['kind']} {statement.get('predicate_type', '')}".rstrip()
    scalars = [f"{k}={v}" for k, v in data.items() if isinstance(v, str | int | bool)]
    nested = [f"{k}.{n}={v}" for k, d in data.items() if isinstance(d, dict) for n, v in d.items()]
    return " ".join((scalars + [n for n in nested if "{" not in n])[:3])


def register(app: typer.Typer) -> None:
    """Add `sop events tail` to ``app``.

    Args:
        app: The main ``sop`` app (``sop_verified.cli.app``).
    """
    events_app.command("tail")(guarded_stream(events_tail))
    app.add_typer(events_app, name="events")
