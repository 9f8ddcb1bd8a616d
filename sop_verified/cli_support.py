"""What every `sop` sub-command shares: consoles, options, the exit codes, errors, JSON output.

**The exit-code table** (:class:`ExitCode`; docs/CLI.md and ``sop --help`` print it) holds for
every command: 0 success; 1 refused, or a verification, check or test failed; 2 a usage or
input error (a missing or unreadable path, a file where a directory is expected or the reverse,
a read-only or forbidden directory, an empty or malformed file, a wrong key file, a bad flag
value); 3 an internal error only, that is a bug to report. :data:`ERROR_EXITS` maps SOP's error
classes onto it, in this one place; :func:`guarded` applies it to every command.

**Errors** are one line on standard error, what was wrong, where and what is expected; under
``--json`` they are one JSON object on standard output instead: ``{"ok": false, "exit": N,
"stage": ..., "code": ..., "message": ...}``. **JSON output** is one style everywhere:
:func:`print_json`, two-space indents, sorted keys (only the streams, ``events tail --json``
and the started line of ``serve`` and ``witness serve``, are JSON Lines). **Text output**
prints user text through :func:`rich.markup.escape` or with markup off, so ``[a-z]`` is never
eaten as markup; it never shows Python's ``None`` (:func:`shown`) and says ``1 policy``,
``2 policies`` (:func:`plural`).
"""

from __future__ import annotations

import contextvars
import errno
import functools
import os
import re
import sqlite3
import sys
from collections.abc import Callable
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar, cast

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from typer._click.exceptions import ClickException  # typer's own click: what it raises
from typer.core import TyperGroup

from sop_verified.cli_paths import (
    STDIN,
    path_problem,
    read_input,
    require_data_dir,
    sniff_obligation,
)
from sop_verified.errors import SOPError

__all__ = [
    "DEFAULT_DATA_DIR",
    "ERROR_EXITS",
    "EXIT_CODES_HELP",
    "STDIN",
    "DataDir",
    "DsnOption",
    "ExitCode",
    "JsonFlag",
    "SopGroup",
    "boot_data_dir",
    "classify",
    "describe",
    "err",
    "fail",
    "guarded",
    "guarded_stream",
    "json_mode",
    "out",
    "plural",
    "print_json",
    "progress_bar",
    "read_input",
    "refuse_if_served",
    "report",
    "require_data_dir",
    "shown",
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
JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print one JSON object for machines (errors too).")
]
DsnOption = Annotated[
    str | None,
    typer.Option(
        help="Keep the state in this PostgreSQL database (e.g. postgresql://127.0.0.1/test)"
        " instead of SQLite in the data directory; its password is never shown."
    ),
]
DEFAULT_DATA_DIR = Path("sop-data")


class ExitCode(IntEnum):
    """The exit status of every `sop` command: one table (docs/CLI.md, ``sop --help``)."""

    OK = 0
    """Success: done, verified, ALLOW, PROVED, every check or test passed."""
    FAILED = 1
    """Refused, or a verification, check or test failed (DENY, tampering found, REFUTED)."""
    USAGE = 2
    """A usage or input error: fix the command line, the file or the directory it names."""
    INTERNAL = 3
    """An internal error only: a bug in SOP (``SOP_DEBUG=1`` shows the traceback)."""


EXIT_CODES_HELP = "\n".join(
    [
        "[bold]Exit codes[/], the same for every command (docs/CLI.md):",
        "  0  success",
        "  1  refused, or a verification, check or test failed",
        "  2  usage or input error: a missing or unreadable path, a file where a directory is"
        " expected or the reverse, a read-only or forbidden directory, an empty or malformed"
        " file, a wrong key file, a bad flag value",
        "  3  internal error only (a bug; SOP_DEBUG=1 shows the traceback)",
        'With --json an error is one JSON object: {"ok": false, "exit", "stage", "code",'
        ' "message"}.',
    ]
)

_FAILED, _USAGE = ExitCode.FAILED, ExitCode.USAGE

ERROR_EXITS: dict[str, tuple[ExitCode, str]] = {
    # An error class's name: its exit status and its stage in the `--json` error. A class not
    # named here takes its nearest named ancestor's (tests/test_cli_conventions.py holds every
    # class of sop_verified.errors named). SOP raises these on purpose, with a message that
    # says what to change, so none of them is an internal error (3).
    "SOPError": (_USAGE, "input"),
    "InputError": (_USAGE, "input"),
    "RequestError": (_USAGE, "input"),
    "ConfigError": (_USAGE, "config"),
    "CertificateError": (_USAGE, "input"),
    "PolicyError": (_USAGE, "policy"),
    "PolicyParseError": (_USAGE, "policy"),
    "PolicyValidationError": (_USAGE, "policy"),
    "PolicyEvaluationError": (_USAGE, "policy"),
    "ObligationError": (_USAGE, "obligation"),
    "PathError": (_USAGE, "path"),
    # refused: SOP understood the input and said no (a capability, a protocol rule, the
    # persistence controller, a policy set's analyses)
    "PolicyRefusedError": (_FAILED, "policy"),
    "CapabilityError": (_FAILED, "capability"),
    # `ClassName:code` is looked up first: `sop cap revoke` of an id never admitted names a
    # capability that does not exist, an input error, not a refusal of one that does
    "CapabilityError:unknown": (_USAGE, "capability"),
    "AttenuationError": (_FAILED, "capability"),
    "ProtocolError": (_FAILED, "protocol"),
    # `sop emp revoke-key` of a key id never registered: no such key, an input error
    "ProtocolError:unknown_key": (_USAGE, "protocol"),
    "PersistenceError": (_FAILED, "persistence"),
    "ConfinementError": (_FAILED, "persistence"),
    # a verification failed: a proof, signature, digest or receipt did not verify
    "VerificationError": (_FAILED, "verification"),
    "ReceiptError": (_FAILED, "verification"),
    # 1, not 2 or 3: something SOP stored disagrees with itself (a log entry edited, a table
    # that no longer matches its seal). It is what `sop log verify` reports with exit 1 when it
    # finds tampering; no change to the command line fixes it, and it is no bug in SOP: SOP
    # found it on purpose and refused to go on
    "IntegrityError": (_FAILED, "integrity"),
    # 2: the store the command was pointed at (the data directory's database, a --dsn) cannot
    # be used: unreachable, locked, read-only, full, another schema. What must change is the
    # environment the command names, as for a path it cannot write; 3 stays for SOP's bugs
    "StorageError": (_USAGE, "storage"),
    # another writer got there first and nothing was written: refused, try again
    "LogHeadMovedError": (_FAILED, "storage"),
    "PendingClosedError": (_FAILED, "storage"),
    "StateMovedError": (_FAILED, "storage"),
    "KeyDecidedError": (_FAILED, "storage"),
    # an entry too long for an entry bundle: the log cannot serve it, whoever asks
    "EntryTooLargeError": (_FAILED, "log"),
    # an entry no witness cosigned yet: as for an index past the log, ask for another entry,
    # later, or with `--unwitnessed` (docs/WITNESS.md)
    "NotWitnessedError": (_USAGE, "log"),
    # a remote SOP or the admin socket: the problem's own class decides when it names one
    "RemoteError": (_USAGE, "remote"),
    "AdminRefusedError": (_USAGE, "admin"),
}

_JSON_MODE: contextvars.ContextVar[str] = contextvars.ContextVar("sop_json_mode", default="")
"""How errors print: ``""`` text on stderr; ``"pretty"`` the JSON error object (``--json``);
``"lines"`` the same object on one line, for the commands whose ``--json`` is a stream of
JSON Lines (``events tail``, ``serve``, ``witness serve``): the stream's last record."""


def classify(exc: BaseException) -> tuple[ExitCode, str, str]:
    """The exit status, ``--json`` stage and code of an error that reached a command's edge.

    Args:
        exc: the error.

    Returns:
        ``(exit status, stage, code)``: SOP's errors by :data:`ERROR_EXITS`; a file-system
        error (missing path, not a directory, read-only, ...) or an unusable SQLite database
        is a usage or input error (2); anything else is internal (3).
    """
    names = [cls.__name__ for cls in type(exc).__mro__]
    code = getattr(exc, "code", None)
    if (named := _problem_class(exc)) is not None:
        names.insert(0, named[0])
        code = named[1]
    for name in names if isinstance(exc, SOPError) else ():
        for key in (f"{name}:{code}", name):
            if key in ERROR_EXITS:
                status, stage = ERROR_EXITS[key]
                return status, stage, code if isinstance(code, str) else _snake(name)
    if isinstance(exc, OSError):
        return _USAGE, "path", _os_code(exc)
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(
        exc, sqlite3.ProgrammingError | sqlite3.InterfaceError | sqlite3.IntegrityError
    ):
        return _USAGE, "storage", "database"
    return ExitCode.INTERNAL, "internal", _snake(type(exc).__name__)


def _problem_class(exc: BaseException) -> tuple[str, str | None] | None:
    """The error class and code an admin-socket problem names (the server's classification)."""
    problem = getattr(exc, "problem", None)
    if not isinstance(problem, dict):
        return None
    named, code = problem.get("error"), problem.get("code")
    if not isinstance(named, str) or named not in ERROR_EXITS:
        return None
    return named, code if isinstance(code, str) else None


def _snake(name: str) -> str:
    base = name.removesuffix("Error") or name
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(base))


def _os_code(exc: OSError) -> str:
    if type(exc) is not OSError:
        return _snake(type(exc).__name__)
    return errno.errorcode.get(exc.errno or 0, "os").lower()


_STORE_EXPECTED = (
    "a database this user can open (and write, for a command that writes; a SQLite database in"
    " WAL mode needs a writable directory even to be read)"
)

_OS_EXPECTED: dict[type[OSError], str] = {
    FileExistsError: "expected a path that does not exist yet, or a directory",
    FileNotFoundError: "expected a path that exists",
    NotADirectoryError: "expected a directory there",
    IsADirectoryError: "expected a file there, not a directory",
    PermissionError: "expected a path this user may read (and write, for a command that writes)",
}


def describe(exc: BaseException) -> str:
    """The one-line message of an error: SOP's own, or what a file-system error means."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return path_problem(Path(os.fsdecode(exc.filename)), exc)
    if isinstance(exc, OSError):
        text = str(exc) or type(exc).__name__
        expected = _OS_EXPECTED.get(type(exc), "expected a path that can be used")
        return text if "expected" in text else f"{text}; {expected}"
    if isinstance(exc, sqlite3.DatabaseError):
        return (
            f"the database could not be used: {exc}; expected the data directory's SQLite"
            " database, readable (and writable, for a command that writes)"
        )
    text = str(exc)
    if isinstance(exc, SOPError):
        said = text or type(exc).__name__
        if classify(exc)[1] == "storage" and not re.search(r"expected|accepted", said):
            said += f"; expected {_STORE_EXPECTED}"
        return said
    return (
        f"internal error `{type(exc).__name__}`: {text} (a bug in SOP; set SOP_DEBUG=1 for"
        " the traceback)"
    )


def fail(
    message: str, code: int = ExitCode.USAGE, *, stage: str = "usage", error: str = "usage"
) -> NoReturn:
    """Print one error (a line on stderr, or the JSON error object under ``--json``) and exit.

    Args:
        message: what was wrong, where, what is expected (text, never markup).
        code: the exit status (:class:`ExitCode`).
        stage: the ``--json`` error's stage.
        error: the ``--json`` error's code.
    """
    mode = _JSON_MODE.get()
    body = {"ok": False, "exit": int(code), "stage": stage, "code": error, "message": message}
    if mode == "lines":
        sys.stdout.write(orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode() + "\n")
    elif mode:
        print_json(body)
    else:
        # the message is text, not markup: a pattern such as `[a-z][a-z0-9_-]` would be eaten;
        # soft_wrap: one line, whatever the terminal's width (a path is never cut)
        err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(int(code))


def report(exc: BaseException) -> NoReturn:
    """Print ``exc`` as one error with its place in the exit-code table, and exit."""
    status, stage, code = classify(exc)
    fail(describe(exc), status, stage=stage, error=code)


def json_mode(mode: str) -> contextvars.Token[str]:
    """Say how errors print from here on: ``""``, ``"pretty"`` or ``"lines"``."""
    return _JSON_MODE.set(mode)


_Cmd = TypeVar("_Cmd", bound=Callable[..., None])


def guarded(fn: _Cmd) -> _Cmd:
    """Errors become one line on stderr (or one JSON object under ``--json``) with the exit
    status of the table, never a traceback; only a bug exits 3."""
    return _guard(fn, "pretty")


def guarded_stream(fn: _Cmd) -> _Cmd:
    """:func:`guarded` for a command whose ``--json`` prints JSON Lines: an error is one line."""
    return _guard(fn, "lines")


def _guard(fn: _Cmd, json_style: str) -> _Cmd:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        token = json_mode(json_style if kwargs.get("json_output") else "")
        try:
            fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            if classify(exc)[0] == ExitCode.INTERNAL and os.environ.get("SOP_DEBUG"):
                raise
            report(exc)
        finally:
            _JSON_MODE.reset(token)

    return cast(_Cmd, run)


class SopGroup(TyperGroup):
    """The `sop` command group: under ``--json`` a usage error (an unknown flag, a bad value, a
    missing argument) is the JSON error object too, exit 2, instead of a framed message."""

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line; see :meth:`typer.core.TyperGroup.main`."""
        argv = list(sys.argv[1:] if args is None else args)
        if not standalone_mode or "--json" not in argv:
            return super().main(
                argv, prog_name, complete_var, standalone_mode, windows_expand_args, **extra
            )
        try:
            done = super().main(argv, prog_name, complete_var, False, windows_expand_args, **extra)
        except ClickException as exc:
            token = json_mode("pretty")
            try:
                fail(exc.format_message(), exc.exit_code, error=_snake(type(exc).__name__))
            except typer.Exit as usage:
                sys.exit(usage.exit_code)
            finally:
                _JSON_MODE.reset(token)
        except typer.Abort:
            sys.exit(1)
        sys.exit(done if isinstance(done, int) else 0)


def print_json(value: Any) -> None:
    """Print ``value`` as every command prints JSON: indented by two, keys sorted."""
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


def plural(count: int, singular: str, many: str | None = None) -> str:
    """``1 policy``, ``2 policies``, ``0 entries``: a count with its noun agreeing."""
    return f"{count} {singular if count == 1 else many or singular + 's'}"


def shown(value: Any, missing: str = "none") -> str:
    """``value`` for text output, ``missing`` where it is None: text never shows ``None``."""
    return missing if value is None else str(value)


def boot_data_dir(data_dir: Path, command: str = "this command", *, ready: bool = True) -> Any:
    """Boot SOP on ``data_dir``, or fail with what to do (not a data directory, served, or,
    with ``ready``, a boot that did not reach READY: the error that stopped it decides the
    exit status, 2 for a bad configuration or key file, 1 for an integrity alarm)."""
    from sop_verified.nexus.sop import SOP  # noqa: PLC0415 - keep `sop --help` fast

    require_data_dir(data_dir)
    refuse_if_served(data_dir, command)
    sop = SOP.boot(data_dir)
    if ready and str(sop.health) != "READY":
        boot = sop.boot_report
        sop.close()
        status, _, code = (
            (_FAILED, "boot", "not_ready") if boot.error is None else classify(boot.error)
        )
        if status == ExitCode.INTERNAL:  # SOP caught it and stayed out of READY: a refusal
            status = _FAILED
        fail(
            f"SOP on `{data_dir}` is {sop.health}: service `{boot.failed}` failed: {boot.detail};"
            f" expected a data directory that boots READY (`sop status --data-dir {data_dir}`"
            " shows each service)",
            status,
            stage="boot",
            error=code,
        )
    return sop


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
        fail(str(exc), stage="served", error="served")
