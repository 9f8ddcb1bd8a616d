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
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sop_verified.errors import (
    InputError,
    IntegrityError,
    SOPError,
    StorageError,
    VerificationError,
)

__all__ = [
    "DEFAULT_DATA_DIR",
    "STDIN",
    "DataDir",
    "DsnOption",
    "JsonFlag",
    "boot_data_dir",
    "err",
    "error_exit",
    "fail",
    "guarded",
    "json_guarded",
    "jsonl_guarded",
    "out",
    "print_json",
    "progress_bar",
    "read_input",
    "refuse_if_served",
    "require_data_dir",
    "sniff_obligation",
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


def progress_bar() -> Progress:
    """A transient progress bar on stderr (stdout stays the command's output)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
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


STDIN = "-"
"""The file name that means standard input, wherever a command reads a file."""

MAX_INPUT = 64 << 20
"""The most bytes :func:`read_input` reads from one file or from standard input."""


def read_input(value: str | Path, *, what: str, accepted: str, max_bytes: int = MAX_INPUT) -> bytes:
    """The bytes of the file ``value``, or of standard input when ``value`` is ``-``.

    Args:
        value: a path, or ``-``.
        what: what the file holds, for messages (``receipt``: "cannot read the receipt
            file `x`: no such file").
        accepted: what is accepted, for messages (``a C2SP tlog-proof file``).
        max_bytes: the most bytes read; more is refused.

    Returns:
        The bytes.

    Raises:
        InputError: the path is missing, a directory, unreadable, or too large; the
            message names the path and what is expected.
    """
    if str(value) == STDIN:
        data = sys.stdin.buffer.read(max_bytes + 1)
        where = f"the {what} on standard input"
    else:
        path = Path(value)
        where = f"the {what} file `{path}`"
        try:
            with path.open("rb") as fh:
                data = fh.read(max_bytes + 1)
        except OSError as exc:
            why = {
                FileNotFoundError: "no such file",
                IsADirectoryError: "it is a directory",
                PermissionError: "permission denied",
            }.get(type(exc), exc.strerror or type(exc).__name__)
            raise InputError(f"cannot read {where}: {why}", accepted=accepted) from None
    if len(data) > max_bytes:
        raise InputError(f"{where} is larger than {max_bytes:,} bytes", accepted=accepted)
    return data


def error_exit(exc: BaseException) -> tuple[int, str, str]:
    """The exit status, stage and code of an error that ends a command.

    1 when a check failed (something stored or signed does not verify), 2 for
    bad input (a path, a file, a flag, a database that cannot be read), 3 for
    anything else (an internal error).
    """
    code = "".join("_" + c.lower() if c.isupper() else c for c in type(exc).__name__).strip("_")
    if isinstance(exc, IntegrityError | VerificationError):
        return 1, "integrity" if isinstance(exc, IntegrityError) else "verification", code
    if isinstance(exc, InputError):
        return 2, "input", code
    if isinstance(exc, StorageError):
        return 2, "storage", code
    if isinstance(exc, SOPError):
        return 2, "sop", code
    return 3, "internal", code


def json_guarded(fn: _Cmd) -> _Cmd:
    """:func:`guarded`, and with ``--json`` an error is one JSON object on stdout.

    The object: ``{"ok": false, "exit_code", "stage", "code", "message"}``;
    without ``--json`` the error is one line on stderr. Exit statuses as
    :func:`error_exit` says.
    """
    return _json_errors(fn, one_line=False)


def jsonl_guarded(fn: _Cmd) -> _Cmd:
    """:func:`json_guarded` for a command whose ``--json`` prints JSON Lines: the error
    object is one line too, after the lines printed before it."""
    return _json_errors(fn, one_line=True)


def _json_errors(fn: _Cmd, *, one_line: bool) -> _Cmd:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            status, stage, code = error_exit(exc)
            if status == 3 and os.environ.get("SOP_DEBUG"):
                raise
            message = str(exc)
            if status == 3:
                message = f"internal error `{type(exc).__name__}`: {exc}"
            if kwargs.get("json_output"):
                error = {
                    "ok": False,
                    "exit_code": status,
                    "stage": stage,
                    "code": code,
                    "message": message,
                }
                if one_line:
                    sys.stdout.write(orjson.dumps(error).decode() + "\n")
                else:
                    print_json(error)
                raise typer.Exit(status) from None
            fail(message + (" (set SOP_DEBUG=1 for the traceback)" if status == 3 else ""), status)

    return cast(_Cmd, run)


def require_data_dir(data_dir: Path) -> None:
    """Refuse a path that is not a data directory, saying what it is and what to do.

    Raises:
        InputError: no directory there, a file there, or a directory without ``sop.toml``.
    """
    if data_dir.is_dir() and (data_dir / "sop.toml").is_file():
        return
    if data_dir.exists() and not data_dir.is_dir():
        raise InputError(
            f"`{data_dir}` is a file, not a SOP data directory",
            accepted="a directory made by `sop init`",
        )
    raise InputError(
        f"no SOP data directory at `{data_dir}`",
        accepted=f"a directory made by `sop init --data-dir {data_dir}`",
    )


def sniff_obligation(data: bytes) -> tuple[str, str]:
    """The format of an obligation read from standard input, and why: ``json`` when it starts
    with ``{``, ``smt2`` when it starts with ``(`` or ``;`` (whitespace skipped).

    Raises:
        InputError: it starts with anything else; ``--format`` must say.
    """
    head = data.lstrip()[:1]
    if head == b"{":
        return "json", "sniffed: it starts with `{`"
    if head in (b"(", b";"):
        return "smt2", f"sniffed: it starts with `{head.decode()}`"
    shown = "nothing" if not head else f"`{head.decode('utf-8', 'replace')}`"
    raise InputError(
        f"cannot tell the format of standard input: it starts with {shown}",
        accepted="`--format smt2` or `--format json` (sniffed: `{` is JSON, `(` or `;` SMT-LIB)",
    )
