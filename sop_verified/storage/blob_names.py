"""Names below a scope root, checked before any system call (INV-4, defence in depth).

A path relative to a scope root is ``/``-separated names; each is 1 to
:data:`MAX_NAME_LEN` characters from ``A-Za-z0-9._~@+=,-``, never ``.``,
``..`` or starting with the reserved ``.sop-``. No NUL, no backslash, no
leading ``/``, no empty name (``//``, trailing ``/``), nothing non-ASCII (so no
Unicode look-alike of a dot or a slash). Nothing is percent-decoded: encoded
forms are refused by the alphabet. Refusals are
:class:`~sop_verified.errors.ConfinementError` with a ``code``.
"""

from __future__ import annotations

from sop_verified.errors import ConfinementError
from sop_verified.tools.paths import MAX_PATH_LEN, MAX_SEGMENTS, SEGMENT_ALPHABET

__all__ = [
    "ACCEPTED",
    "MAX_DEPTH",
    "MAX_NAME_LEN",
    "RESERVED_PREFIX",
    "TEMP_PREFIX",
    "refuse",
    "split_relative",
]

MAX_NAME_LEN = 160
"""Longest name accepted: request segments are at most 128, stored names add a version suffix."""
MAX_DEPTH = MAX_SEGMENTS + 2
RESERVED_PREFIX = ".sop-"
TEMP_PREFIX = RESERVED_PREFIX + "tmp-"
_NAME_CHARS = frozenset(SEGMENT_ALPHABET)
ACCEPTED = (
    f"`/`-separated names of 1-{MAX_NAME_LEN} characters from `A-Za-z0-9._~@+=,-`, "
    f"not `.`, `..` or starting with `{RESERVED_PREFIX}`"
)


def refuse(message: str, code: str, where: str) -> ConfinementError:
    """A confinement refusal naming what was wrong, where, and what is accepted.

    Args:
        message: what was wrong.
        code: the machine-readable rule (``symlink``, ``dot_component``, ...).
        where: the path concerned.

    Returns:
        The error, for the caller to raise.
    """
    return ConfinementError(message, code=code, where=where, accepted=ACCEPTED)


def _check_name(name: str, where: str) -> None:
    if not name:
        raise refuse("empty path component (`//`, or a leading or trailing `/`)", "empty", where)
    if name in (".", ".."):
        raise refuse(f"path component `{name}` is not allowed", "dot_component", where)
    if len(name) > MAX_NAME_LEN:
        raise refuse(f"path component is {len(name)} characters long", "name_too_long", where)
    bad = next((c for c in name if c not in _NAME_CHARS), None)
    if bad is not None:
        code = "non_ascii" if ord(bad) > 0x7F else "bad_character"
        raise refuse(f"path component holds the character `U+{ord(bad):04X}`", code, where)
    if name.startswith(RESERVED_PREFIX):
        raise refuse(f"path component `{name[:40]}` uses a reserved prefix", "reserved", where)


def split_relative(rel: object, *, where: str = "path") -> tuple[str, ...]:
    """Split a path relative to a scope root into checked names.

    Args:
        rel: the path, e.g. ``s1/out.bin``.
        where: what the path is, for messages.

    Returns:
        Its names, each one checked.

    Raises:
        ConfinementError: not a string, too long or deep, NUL, backslash,
            absolute, or a bad name; ``code`` says which.
    """
    if not isinstance(rel, str):
        raise refuse(f"path must be a string, got `{type(rel).__name__}`", "not_a_string", where)
    if len(rel) > MAX_PATH_LEN:
        raise refuse(f"path is {len(rel)} characters long", "path_too_long", where)
    if "\x00" in rel:
        raise refuse("path holds a NUL byte", "nul", where)
    if "\\" in rel:
        raise refuse("path holds a backslash", "backslash", where)
    if rel.startswith("/"):
        raise refuse("path is absolute", "absolute", where)
    parts = tuple(rel.split("/"))
    if len(parts) > MAX_DEPTH:
        raise refuse(f"path has {len(parts)} components", "too_deep", where)
    for part in parts:
        _check_name(part, where)
    return parts
