"""What every `sop` sub-command shares: consoles, options, error handling, JSON output."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar, cast

import orjson
import typer
from rich.console import Console
from rich.markup import escape

from sop_verified.errors import SOPError

__all__ = [
    "DEFAULT_DATA_DIR",
    "DataDir",
    "DsnOption",
    "JsonFlag",
    "boot_data_dir",
    "err",
    "fail",
    "guarded",
    "out",
    "print_json",
    "refuse_if_served",
]

out = Console()
err = Console(stderr=True)

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir", envvar="SOP_DATA_DIR", help="The data directory (made by `sop init`)."
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object for machines.")]
DsnOption = Annotated[
    str | None,
    typer.Option(
        help="Keep the state in this PostgreSQL database (e.g. postgresql://127.0.0.1/test)"
        " instead of SQLite in the data directory; its password is never shown."
    ),
]
DEFAULT_DATA_DIR = Path("sop-data")


def fail(message: str, code: int = 2) -> NoReturn:
    # the message is text, not markup: a pattern such as `[a-z][a-z0-9_-]` would be eaten
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True)
    raise typer.Exit(code)


_Cmd = TypeVar("_Cmd", bound=Callable[..., None])


def guarded(fn: _Cmd) -> _Cmd:
    """SOP errors become one line on stderr and exit status 2, never a traceback."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except SOPError as exc:
            fail(str(exc))
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            if os.environ.get("SOP_DEBUG"):
                raise
            fail(
                f"internal error `{type(exc).__name__}`: {exc} (set SOP_DEBUG=1 for the traceback)",
                3,
            )

    return cast(_Cmd, run)


def print_json(value: Any) -> None:
    sys.stdout.write(
        orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n"
    )


def boot_data_dir(data_dir: Path, command: str = "this command") -> Any:
    """Boot SOP on ``data_dir``, or fail with what to do (not a data directory, or served)."""
    from sop_verified.nexus.sop import SOP  # noqa: PLC0415 - keep `sop --help` fast

    if not (data_dir / "sop.toml").exists():
        fail(
            f"no SOP data directory at `{data_dir}`; "
            f"create one with `sop init --data-dir {data_dir}`"
        )
    refuse_if_served(data_dir, command)
    return SOP.boot(data_dir)


def refuse_if_served(data_dir: Path, command: str) -> None:
    """Fail (exit 2) when a server holds ``data_dir``: it is its database's only writer.

    Args:
        data_dir: the data directory ``command`` would open for writing.
        command: the command, for the message (``sop state repair``).
    """
    from sop_verified.server.serve_lock import holder  # noqa: PLC0415 - keep `sop --help` fast

    if holder(data_dir) is None:
        return
    from sop_verified.server.admin_client import refuse_while_served  # noqa: PLC0415

    try:
        refuse_while_served(data_dir, command)
    except SOPError as exc:
        fail(str(exc))
