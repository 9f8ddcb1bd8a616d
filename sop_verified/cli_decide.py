"""`sop decide`: one request from a file or standard input, the decision, its reasons and receipt.

Registered on the main app by :func:`register`. The request is read and
checked here first (JSON, one object, SOP's request schema): a file that is
missing, unreadable or malformed is a usage error (exit 2, the path named),
and nothing is decided or logged. A decided request exits 0 for ALLOW and 1
for DENY, with its reasons.

``--dry-run`` boots SOP read-only (``SOP.boot(read_only=True)``): every stage
runs as the kernel runs it (health, capability, policy, obligations through
the proof gate), nothing is appended to the log and no byte of the data
directory changes; the answer says ``dry_run`` and carries no receipt.

While ``sop serve`` holds the data directory it is its database's only
writer: ``sop decide`` then refuses (exit 2) and says to send the request
through the bridge plane, where the server decides and logs it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from sop_verified.cli_paths import require_data_dir
from sop_verified.cli_support import (
    DEFAULT_DATA_DIR,
    STDIN,
    DataDir,
    JsonFlag,
    err,
    fail,
    guarded,
    out,
    print_json,
    read_input,
)
from sop_verified.errors import InputError

__all__ = ["read_request", "register"]

_ACCEPTED = (
    "one JSON object in SOP's request schema: `request_id`, `principal`, `action`,"
    " `resource`, `capability`, optional `context` and `obligations` (docs/CLI.md)"
)


def register(app: typer.Typer) -> None:
    """Add ``sop decide`` to ``app``."""
    app.command("decide")(guarded(decide))


def decide(
    source: Annotated[
        str | None,
        typer.Argument(
            metavar="FILE|-",
            help="A JSON file holding one request; `-` or nothing reads standard input.",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Decide without logging: read-only, no receipt, no byte of the data"
            " directory changed.",
        ),
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Decide one request and print the decision, its reasons and its receipt.

    Exit 0 for ALLOW, 1 for DENY, 2 for a missing or malformed request file or
    data directory. The decision is logged (its receipt names the log index and
    the signed checkpoint) unless --dry-run, which runs every stage (capability,
    policy, obligations) exactly as the kernel does and records nothing.

    While `sop serve` holds the data directory, this command refuses: send the
    request through the bridge plane (`POST /v1/decide`, docs/HTTP_API.md), or
    stop the server.
    """
    name, request = read_request(source)
    _check_data_dir(data_dir, dry_run=dry_run)
    from sop_verified.nexus.sop import SOP  # noqa: PLC0415 - keep `sop --help` fast

    with SOP.boot(data_dir, read_only=dry_run) as sop:
        if str(sop.health) != "READY":
            err.print(f"SOP is {sop.health}: {escape(sop.boot_report.detail)}", highlight=False)
        decision = sop.dry_run(request) if dry_run else sop.submit(request)
    data = decision.to_dict()
    if json_output:
        print_json(data)
    else:
        _render(name, request.to_dict(), data)
    raise typer.Exit(0 if decision.allowed else 1)


def read_request(source: str | None) -> tuple[str, Any]:
    """Read and check the request at ``source`` (a path, ``-`` or None: standard input).

    Returns:
        The name to show for it, and the parsed
        :class:`~sop_verified.core.request.Request`.

    Raises:
        typer.Exit: exit 2 after one error line naming the path and what is expected.
    """
    from sop_verified.core.request import MAX_REQUEST_BYTES, parse_request  # noqa: PLC0415
    from sop_verified.tools.strict_json import loads_unique_keys  # noqa: PLC0415

    name, data = _read(source, MAX_REQUEST_BYTES)
    try:
        value = loads_unique_keys(data)
    except (ValueError, RecursionError) as exc:
        fail(f"`{name}` is not JSON ({exc}); expected {_ACCEPTED}")
    if not isinstance(value, dict):
        fail(f"`{name}` holds a JSON {type(value).__name__}; expected {_ACCEPTED}")
    try:
        return name, parse_request(value)
    except InputError as exc:
        hint = "" if exc.accepted else f"; expected {_ACCEPTED}"
        fail(f"`{name}` is not a SOP request: {exc}{hint}")


def _read(source: str | None, cap: int) -> tuple[str, bytes]:
    if (source is None or source == STDIN) and (sys.stdin is None or sys.stdin.isatty()):
        fail(f"no request: give a FILE, or `-` and pipe {_ACCEPTED} into it")
    data = read_input(source or STDIN, what="request", accepted=_ACCEPTED, max_bytes=cap)
    name = "<stdin>" if source is None or source == STDIN else source
    if not data.strip():
        fail(f"`{name}` is empty; expected {_ACCEPTED}")
    return name, data


def _check_data_dir(data_dir: Path, *, dry_run: bool) -> None:
    """Fail (exit 2) unless ``data_dir`` is a data directory no server holds (and, for a
    dry run, one SOP can open read-only: SQLite)."""
    from sop_verified.nexus.config import load_config  # noqa: PLC0415 - keep --help fast
    from sop_verified.server.serve_lock import holder  # noqa: PLC0415

    require_data_dir(data_dir)
    pid = holder(data_dir)
    if pid is not None:
        fail(
            f"a server (pid {pid}) holds `{data_dir}` and is the only writer of its database;"
            " send the request through its bridge plane (`POST /v1/decide` with a client"
            f" certificate, docs/HTTP_API.md), or stop the server (kill -TERM {pid}) and"
            " decide it here"
        )
    if dry_run and load_config(data_dir).postgresql is not None:
        fail(
            f"`{data_dir}` keeps its state in PostgreSQL and a dry run opens SQLite data"
            " directories only (read-only); decide through the bridge plane, or try the"
            " policies with `sop policy test`"
        )


def _render(name: str, request: dict[str, Any], data: dict[str, Any]) -> None:
    colour = "green" if data["effect"] == "ALLOW" else "red"
    if data.get("dry_run"):
        out.print("[bold yellow]DRY RUN — not logged[/]")
    what = " ".join(escape(str(request[k])) for k in ("principal", "action", "resource"))
    out.print(
        f"[bold {colour}]{data['effect']}[/]  {escape(str(data['request_id']))}: {what}",
        highlight=False,
    )
    if data["capability_id"]:
        out.print(f"  capability  {escape(data['capability_id'])}", highlight=False, soft_wrap=True)
    if data["policy_ids"]:
        out.print(
            f"  policies    {escape(', '.join(data['policy_ids']))}",
            highlight=False,
            soft_wrap=True,
        )
    for reason in data["reasons"]:
        line = f"{reason['stage']}: {reason['code']} — {reason['message']}"
        out.print(f"  reason      {escape(line)}", highlight=False, soft_wrap=True)
        if reason.get("counterexample"):
            out.print(
                f"  counterexample {escape(str(reason['counterexample']))}",
                highlight=False,
                soft_wrap=True,
            )
    out.print(f"  receipt     {escape(_receipt_line(data))}", highlight=False, soft_wrap=True)
    if name != "<stdin>" and data.get("dry_run"):
        out.print(
            f"  (`sop decide {escape(name)}` without --dry-run decides and logs it)",
            soft_wrap=True,
        )


def _receipt_line(data: dict[str, Any]) -> str:
    if data.get("dry_run"):
        return "none: a dry run records nothing"
    receipt = data.get("receipt")
    if receipt is None:
        return "none: the decision was not logged (see the reasons)"
    lines = (receipt.get("checkpoint") or "").splitlines()
    signed = f", checkpoint of size {lines[1]}, root {lines[2]}" if len(lines) > 2 else ""
    index = receipt["index"]
    return f"log index {index}{signed} (`sop log prove {index}` for the offline proof)"
