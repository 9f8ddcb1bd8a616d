"""The `sop state` commands: check derived state against the log, and repair it (INV-11).

Registered on the main app by :func:`register`, with the CLI's conventions:
rich output for humans, ``--json`` for machines, the exit-code table of
:mod:`sop_verified.cli_support`: exit 2 for bad input, 1 when a check fails or a
repair is refused.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from sop_verified.cli_support import (
    DEFAULT_DATA_DIR,
    DataDir,
    ExitCode,
    JsonFlag,
    fail,
    guarded,
    out,
    plural,
    print_json,
    refuse_if_served,
    require_data_dir,
)
from sop_verified.errors import IntegrityError

__all__ = ["register"]

state_app = typer.Typer(
    no_args_is_help=True, help="Derived state: check it against the log, rebuild it from the log."
)

VKey = Annotated[
    str | None,
    typer.Option(help="Trusted checkpoint key (string or file), held outside the data directory."),
]


def state_check(
    data_dir: DataDir = DEFAULT_DATA_DIR, vkey: VKey = None, json_output: JsonFlag = False
) -> None:
    """Audit the log, then compare every derived row with the log's projection (exit 1: differs)."""
    from sop_verified.nexus.state_ops import check_data_dir  # noqa: PLC0415 - keep --help fast

    require_data_dir(data_dir)
    check = check_data_dir(data_dir, vkey=vkey)
    data = check.to_dict()
    if json_output:
        print_json(data)
    else:
        _render_check(data)
    raise typer.Exit(0 if check.ok else 1)


def _render_check(data: dict[str, Any]) -> None:
    out.print(f"log: {escape(data['log'])}")
    out.print(f"state seal: {escape(data['seal'])}")
    for table, n in data["unauthenticated_rows"].items():
        rows = f"{plural(n, 'row')} of `{escape(table)}`"
        out.print(f"[yellow]{rows} do not authenticate and would be dropped[/]")
    if data["ok"]:
        out.print("[green]derived state matches the log[/]")
        return
    if data["mismatches"]:
        table = Table(title="rows that differ from the log", box=box.SIMPLE)
        for col in ("table", "row", "log entry", "expected", "found"):
            table.add_column(col, overflow="fold")
        for m in data["mismatches"]:
            index = "" if m["log_index"] is None else str(m["log_index"])
            cells = [escape(m[k]) for k in ("table", "row")]
            table.add_row(*cells, index, escape(m["expected"]), escape(m["found"]))
        out.print(table)
    out.print(
        f"[red]derived state differs from the log: {plural(data['total_mismatches'], 'row')}[/];"
        " `sop state repair` rebuilds it from the log"
    )


def state_repair(
    data_dir: DataDir = DEFAULT_DATA_DIR, vkey: VKey = None, json_output: JsonFlag = False
) -> None:
    """Rebuild every derived table from the verified log, put it in place and log the repair."""
    from sop_verified.nexus.state_ops import repair_data_dir  # noqa: PLC0415 - keep --help fast

    require_data_dir(data_dir)
    refuse_if_served(data_dir, "sop state repair")
    try:
        report = repair_data_dir(data_dir, vkey=vkey)
    except IntegrityError as exc:
        fail(f"repair refused: {exc}", ExitCode.FAILED, stage="integrity", error="repair_refused")
    data = {"ok": True, **report.to_dict()}
    if json_output:
        print_json(data)
        return
    entries, rows = plural(report.log_size, "log entry", "log entries"), plural(report.total, "row")
    out.print(f"rebuilt derived state from {entries}; {rows} differed")
    for line in report.first:
        out.print(f"  {escape(line)}")
    for table, n in report.dropped.items():
        dropped = plural(n, "row")
        out.print(f"[yellow]dropped {dropped} of `{escape(table)}` that did not authenticate[/]")
    out.print(f"the previous database is kept as `{escape(str(report.kept_as))}`")
    out.print(f"[green]repair logged at entry {report.log_index}[/]")


config_app = typer.Typer(no_args_is_help=True, help="The configuration, `sop.toml`.")


def config_accept(data_dir: DataDir = DEFAULT_DATA_DIR, json_output: JsonFlag = False) -> None:
    """Accept the current `sop.toml` after you changed it (logged; needs the keys)."""
    from sop_verified.nexus.state_ops import accept_config  # noqa: PLC0415 - keep --help fast

    require_data_dir(data_dir)
    refuse_if_served(data_dir, "sop config accept")
    digest, index = accept_config(data_dir)
    if json_output:
        print_json({"config_digest": digest, "log_index": index})
        return
    out.print(f"accepted `sop.toml` ({digest}); logged at entry {index}")


def register(app: typer.Typer) -> None:
    """Add the state and config sub-commands to ``app`` (``sop_verified.cli.app``)."""
    state_app.command("check")(guarded(state_check))
    state_app.command("repair")(guarded(state_repair))
    config_app.command("accept")(guarded(config_accept))
    app.add_typer(state_app, name="state")
    app.add_typer(config_app, name="config")
