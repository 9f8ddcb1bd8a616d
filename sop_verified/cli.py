"""The `sop` command: the admin plane and the auditor's tools.

Humans get rich tables; ``--json`` prints one JSON object for machines.
Errors are one line on stderr (what, where, what is accepted) and exit 2;
a check that fails exits 1. Keys are never printed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import orjson
import typer
from rich.console import Console

from sop_verified.errors import SOPError

__all__ = ["app", "main"]

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="SOP, the verified operations kernel."
)
spec_app = typer.Typer(no_args_is_help=True, help="The formal spec and its proofs.")
policy_app = typer.Typer(no_args_is_help=True, help="Policy sets: analyse and activate.")
cap_app = typer.Typer(no_args_is_help=True, help="Capabilities: admit, attenuate, revoke.")
app.add_typer(spec_app, name="spec")
app.add_typer(policy_app, name="policy")
app.add_typer(cap_app, name="cap")

out = Console()
err = Console(stderr=True)

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir", envvar="SOP_DATA_DIR", help="The data directory (made by `sop init`)."
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object for machines.")]
DEFAULT_DATA_DIR = Path("sop-data")


def _fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    raise typer.Exit(code)


def _print_json(value: Any) -> None:
    sys.stdout.write(
        orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n"
    )


@spec_app.command("check")
def spec_check(json_output: JsonFlag = False) -> None:
    """Discharge every invariant with Z3; write proofs/REPORT.md; exit 1 on a counterexample."""
    from proofs.cli import spec_check as run  # noqa: PLC0415 - z3 model loads only when asked

    raise typer.Exit(run(json_output=json_output))


def main() -> None:
    """Console-script entry point: SOP errors become one line and exit status 2."""
    try:
        app()
    except SOPError as exc:
        _fail(str(exc))


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("COLUMNS", "120")
    main()
