"""Paths a `sop` command is given, checked before it uses them: what is there, what is expected.

A command checks the paths it was given first (:func:`require_data_dir`, :func:`require_file`,
:func:`require_output_file`, :func:`require_output_dir`, :func:`require_new_dir`) and
refuses with a :class:`~sop_verified.errors.PathError` that names the path, what is there and
what is expected: nothing there, a file where a directory is expected or the reverse, a
symbolic link to nothing, a path under a file. A file-system error that still reaches a
command's edge is explained the same way by :func:`path_problem`. Both are exit status 2 in
the exit-code table (:mod:`sop_verified.cli_support`). :func:`read_input` reads a file so
checked, or standard input for ``-``.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

from sop_verified.errors import InputError, PathError

__all__ = [
    "DATA_DIR_EXPECTED",
    "MAX_INPUT",
    "STDIN",
    "path_problem",
    "read_input",
    "require_data_dir",
    "require_file",
    "require_made_dir",
    "require_new_dir",
    "require_output_dir",
    "require_output_file",
    "sniff_obligation",
]

DATA_DIR_EXPECTED = "a data directory made by `sop init`"


def _blocking_file(path: Path) -> Path | None:
    """The first ancestor of ``path`` that exists and is not a directory, if there is one."""
    for parent in reversed(path.parents):
        if os.path.lexists(parent) and not parent.is_dir():
            return parent
    return None


def _what_is_there(path: Path) -> tuple[str, str] | None:
    """``(code, what)`` when ``path`` cannot be used as anything: nothing there, a dangling
    link, a file in the way. None when something usable (a file or a directory) is there."""
    if (blocker := _blocking_file(path)) is not None:
        what = f"`{blocker}` is a file, not a directory, so `{path}` cannot exist"
        return "not_a_directory", what
    if path.is_symlink() and not path.exists():
        target = os.readlink(path)
        what = f"`{path}` is a symbolic link to `{target}`, which does not exist"
        return "dangling_symlink", what
    if not os.path.lexists(path):
        return "not_found", f"nothing is at `{path}`"
    return None


def require_data_dir(data_dir: Path) -> None:
    """``data_dir`` must be a data directory: a directory holding ``sop.toml``.

    Args:
        data_dir: the ``--data-dir`` given.

    Raises:
        PathError: it is missing, a file, a link to nothing, under a file, or a directory
            without ``sop.toml``; the message says what to do (``sop init`` only where it would
            work).
    """
    require_made_dir(data_dir, "sop.toml", DATA_DIR_EXPECTED, f"sop init --data-dir {data_dir}")


def require_made_dir(path: Path, marker: str, expected: str, make: str) -> None:
    """``path`` must be a directory that ``make`` made: it holds the file ``marker``.

    Args:
        path: the directory given.
        marker: the file such a directory always holds (``sop.toml``, ``witness.key``).
        expected: what is expected, for the message (``a data directory made by `sop init```).
        make: the command that makes one there, suggested only where it would work.

    Raises:
        PathError: it is missing, a file, a link to nothing, under a file, or a directory
            without ``marker``.
    """
    if (found := _what_is_there(path)) is not None:
        code, what = found
        hint = f" (`{make}` creates one)" if code == "not_found" else ""
        raise PathError(f"{what}; expected {expected}{hint}", code=code, path=str(path))
    if not path.is_dir():
        raise PathError(
            f"`{path}` is a file, not a directory; expected {expected}",
            code="not_a_directory",
            path=str(path),
        )
    held = path / marker
    if not os.path.lexists(held):
        empty = not any(path.iterdir())
        hint = f" (`{make}` creates one in it)" if empty else ""
        raise PathError(
            f"`{path}` is {'an empty' if empty else 'a'} directory without `{marker}`;"
            f" expected {expected}{hint}",
            code="not_a_data_directory",
            path=str(path),
        )
    if not held.is_file():
        raise PathError(
            f"`{held}` is not a file; expected {expected}, which holds `{marker}`",
            code="is_a_directory",
            path=str(held),
        )


def require_new_dir(path: Path, expected: str, *, empty: bool = False) -> None:
    """``path`` must be a place a directory can be made: nothing there yet, or a directory
    (with ``empty``, an empty one).

    Raises:
        PathError: a file, a link to nothing, a path under a file, or (with ``empty``) a
            directory that holds something.
    """
    found = _what_is_there(path)
    if found is not None and found[0] != "not_found":
        raise PathError(f"{found[1]}; expected {expected}", code=found[0], path=str(path))
    if found is None and not path.is_dir():
        raise PathError(
            f"`{path}` is a file, not a directory; expected {expected}",
            code="exists",
            path=str(path),
        )
    if found is None and empty and any(path.iterdir()):
        raise PathError(
            f"`{path}` is not an empty directory; expected {expected}",
            code="exists",
            path=str(path),
        )


def require_file(
    path: Path, expected: str, *, directory_too: bool = False, nonempty: bool = False
) -> None:
    """``path`` must be a file (or, with ``directory_too``, a directory) that exists.

    Args:
        path: the path given.
        expected: what is expected there, for the message (``an .smt2 or .json obligation``).
        directory_too: a directory is accepted as well.
        nonempty: an empty file is refused too.

    Raises:
        PathError: nothing there, a link to nothing, under a file, a directory where a file is
            expected, something that is neither a file nor a directory, or (``nonempty``) an
            empty file.
    """
    if (found := _what_is_there(path)) is not None:
        raise PathError(f"{found[1]}; expected {expected}", code=found[0], path=str(path))
    if path.is_dir() and not directory_too:
        raise PathError(
            f"`{path}` is a directory; expected {expected}", code="is_a_directory", path=str(path)
        )
    if not path.is_file() and not path.is_dir():
        raise PathError(
            f"`{path}` is not a regular file; expected {expected}",
            code="not_a_file",
            path=str(path),
        )
    if nonempty and path.is_file() and path.stat().st_size == 0:
        raise PathError(f"`{path}` is empty; expected {expected}", code="empty", path=str(path))


def require_output_file(path: Path, expected: str) -> None:
    """``path`` must be a file that can be written: not a directory, in a directory.

    Raises:
        PathError: a directory, a link to nothing, or a path under a file or a missing one.
    """
    if path.is_dir():
        raise PathError(
            f"`{path}` is a directory; expected {expected}", code="is_a_directory", path=str(path)
        )
    found = _what_is_there(path)
    if found is not None and found[0] != "not_found":
        raise PathError(f"{found[1]}; expected {expected}", code=found[0], path=str(path))
    parent = path.parent
    if not parent.is_dir():
        raise PathError(
            f"the directory `{parent}` of `{path}` does not exist; expected {expected}, in a"
            " directory that exists",
            code="not_found",
            path=str(path),
        )


def require_output_dir(path: Path, expected: str) -> None:
    """``path`` must be a directory, or a path where one can be made (under directories).

    Raises:
        PathError: a file, a link to nothing, or a path under a file.
    """
    found = _what_is_there(path)
    if found is not None and found[0] != "not_found":
        raise PathError(f"{found[1]}; expected {expected}", code=found[0], path=str(path))
    if found is None and not path.is_dir():
        raise PathError(
            f"`{path}` is a file, not a directory; expected {expected}",
            code="not_a_directory",
            path=str(path),
        )


_EXPECTED = {
    errno.ENOENT: "expected a path that exists",
    errno.ENOTDIR: "expected a directory there",
    errno.EISDIR: "expected a file there, not a directory",
    errno.EEXIST: "expected a path that does not exist yet",
    errno.EACCES: "expected a path this user may read (and write, for a command that writes)",
    errno.EPERM: "expected a path this user may read (and write, for a command that writes)",
    errno.EROFS: "expected a writable file system (a read-only one suits read-only commands)",
    errno.ENOSPC: "expected free space on the device",
}


def path_problem(path: Path, exc: OSError) -> str:
    """The message for a file-system error on ``path``: what is there, what is expected.

    Args:
        path: the path the error names.
        exc: the error.

    Returns:
        One line: the path, what went wrong (the file in the way, the dangling link, the
        read-only file system, ...) and what is expected.
    """
    code = exc.errno or 0
    expected = _EXPECTED.get(code, "expected a path that can be used")
    found = _what_is_there(path)
    if found is not None and code in (errno.ENOENT, errno.ENOTDIR):
        return f"{found[1]}; {expected}"
    reason = exc.strerror or str(exc)
    if code in (errno.EACCES, errno.EPERM):
        reason = f"permission denied (running as uid {os.getuid()})"
    elif code == errno.EROFS:
        reason = "it is on a read-only file system"
    elif code == errno.EISDIR:
        reason = "it is a directory"
    elif code == errno.EEXIST:
        reason = "it exists already"
    return f"cannot use `{path}`: {reason}; {expected}"


STDIN = "-"
"""The file name that means standard input, wherever a command reads a file."""

MAX_INPUT = 64 << 20
"""The most bytes :func:`read_input` reads from one file or from standard input."""


def read_input(
    value: str | Path,
    *,
    what: str,
    accepted: str,
    max_bytes: int = MAX_INPUT,
    nonempty: bool = False,
) -> bytes:
    """The bytes of the file ``value``, or of standard input when ``value`` is ``-``.

    A path is checked first (:func:`require_file`): nothing there, a
    directory, a file in the way or a link to nothing is named as such.

    Args:
        value: a path, or ``-``.
        what: what the file holds, for messages (``receipt``: "cannot read the receipt
            file `x`: no such file").
        accepted: what is accepted, for messages (``a C2SP tlog-proof file``).
        max_bytes: the most bytes read; more is refused.
        nonempty: an empty file (or empty standard input) is refused too.

    Returns:
        The bytes.

    Raises:
        InputError: the path is missing, a directory, unreadable, too large or (with
            ``nonempty``) empty; the message names the path and what is expected.
    """
    if str(value) != STDIN:
        require_file(Path(value), accepted)
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
    if nonempty and not data:
        raise InputError(f"{where} is empty", accepted=accepted)
    return data


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
