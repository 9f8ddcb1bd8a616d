"""Whose key an audit trusted, and whether that trust means anything.

``sop log verify`` checks every checkpoint against one verifier key. Given
with ``--vkey`` (a key string, or a file held outside the data directory), it
is a key the auditor obtained elsewhere, and a log rewritten by someone
without the checkpoint's secret key fails against it. Without ``--vkey`` the
audit falls back to ``keys/checkpoint.genesis.vkey`` inside the data
directory: then whoever can rewrite that directory can replace the key with
their own along with the log, the checkpoints and the tiles, and the audit
passes. The report says so every time, in words and as a field, and names the
remedies: a key held elsewhere (``--vkey``) and checkpoints seen by others
(``--checkpoint`` with a checkpoint or receipt kept elsewhere; witnesses).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sop_verified.errors import ConfigError, InputError
from sop_verified.nexus.keys import CHECKPOINT_GENESIS, read_vkey
from sop_verified.tools.signed_note import Verifier

__all__ = ["KeySource", "TrustedKey", "key_text", "read_vkey_arg", "trusted_key"]

KeySource = Literal["vkey_string", "vkey_file", "data_directory"]

_ACCEPTED = "a C2SP verifier key string (`name+keyid+base64`) or the path of a file holding one"


def _inside_warning(path: Path) -> str:
    return (
        f"the trusted key was read from `{path}`, inside the data directory: this proves "
        "nothing against someone who can rewrite that directory (they replace the key with "
        "their own along with the log); pass `--vkey` with a key held elsewhere, and "
        "`--checkpoint` with a checkpoint or receipt kept elsewhere or cosigned by witnesses"
    )


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """The verifier key an audit trusted and where it came from.

    Attributes:
        verifier: The key.
        source: ``vkey_string`` (``--vkey`` gave the key itself), ``vkey_file``
            (``--vkey`` gave a file) or ``data_directory`` (the fallback).
        path: The file the key was read from (None for a key string).
        held_elsewhere: False when the key came from inside the data directory,
            whether by the fallback or a ``--vkey`` file that lies there.
    """

    verifier: Verifier
    source: KeySource
    path: Path | None
    held_elsewhere: bool

    @property
    def warning(self) -> str | None:
        """Why this trust proves nothing, when it does not; None for a key held elsewhere."""
        if self.held_elsewhere or self.path is None:
            return None
        return _inside_warning(self.path)

    def origin(self) -> str:
        """Where the key came from, in words."""
        if self.source == "vkey_string":
            return "given with `--vkey`"
        if self.source == "vkey_file":
            return f"read from `{self.path}` (`--vkey`)"
        return f"read from `{self.path}` in the data directory (no `--vkey` given)"

    def to_dict(self) -> dict[str, Any]:
        """The report fields (``trusted_key`` stays the verifier key string)."""
        return {
            "trusted_key": self.verifier.vkey,
            "trusted_key_name": self.verifier.name,
            "trusted_key_id": f"{self.verifier.key_id:08x}",
            "trusted_key_source": self.source,
            "trusted_key_path": None if self.path is None else str(self.path),
            "trusted_key_held_elsewhere": self.held_elsewhere,
            "trusted_key_warning": self.warning,
        }


_KEY_STRING = re.compile(r"[^+\s]+\+[0-9a-fA-F]{8}\+[A-Za-z0-9+/=]+")
"""The shape of a C2SP key string, ``name+keyid+base64``: a value of that shape that names no
file is read as a key; any other value that names no file is a path that is not there."""


_MAX_KEY_TEXT = 64 * 1024
"""The most of standard input read for a key (a key file is one line)."""


def key_text(
    value: str, where: str, expected: str, noun: str = "verifier key"
) -> tuple[str, Path | None]:
    """A key given on the command line: the text of the file ``value`` names, or ``value``.

    ``-`` reads the key from standard input (one option per command may take it). A file
    named ``value`` wins; else a value shaped like a key string is the key; else it was
    meant as a path, and the error says that nothing (or a directory) is there, rather than
    that a key is malformed.

    Args:
        value: a key string or the path of a file holding one.
        where: the option, for the message (``--vkey``).
        expected: what is accepted, for the message.
        noun: the kind of key, for the message.

    Returns:
        The key text (stripped) and the file it was read from (None for a key string).

    Raises:
        InputError: the file is missing, a directory, unreadable or empty.
    """
    if value == "-":
        text = sys.stdin.read(_MAX_KEY_TEXT).strip()
        if not text:
            raise InputError(f"standard input holds no {noun}", where=where, accepted=expected)
        return text, None
    path = Path(value)
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise InputError(
                f"cannot read `{value}`: {why}", where=where, accepted=expected
            ) from None
        if not text:
            raise InputError(f"the key file `{value}` is empty", where=where, accepted=expected)
        return text, path
    if _KEY_STRING.fullmatch(value.strip()):
        return value.strip(), None
    if path.is_dir():
        what = f"`{value}` is a directory, not a {noun} file"
        raise InputError(what, where=where, accepted=expected)
    raise InputError(
        f"no {noun} file at `{value}`, and it is not a {noun} string",
        where=where,
        accepted=expected,
    )


def read_vkey_arg(value: str) -> tuple[Verifier, Path | None]:
    """Read a verifier key given as a key string or as the path of a file holding one.

    Args:
        value: A file path, or a key string (``name+keyid+base64``).

    Returns:
        The verifier, and the file it was read from (None for a key string).

    Raises:
        InputError: no such file, a file without a verifier key, or a malformed key string.
    """
    text, path = key_text(value, "--vkey", _ACCEPTED)
    if path is None:
        return Verifier.from_string(text), None
    try:
        return read_vkey(path), path
    except ConfigError as exc:
        raise InputError(str(exc), where="--vkey", accepted=_ACCEPTED) from None


def trusted_key(data_dir: Path, vkey: str | None) -> TrustedKey:
    """The key to trust: ``vkey`` when given, else the data directory's genesis key.

    Args:
        data_dir: The data directory.
        vkey: ``--vkey``: a key string or a file path; None for the fallback.

    Returns:
        The key and where it came from.

    Raises:
        ConfigError: no ``vkey`` and no readable genesis key in the data directory.
        InputError: ``vkey`` is malformed or names no readable key file.
    """
    if vkey is None:
        genesis = data_dir / CHECKPOINT_GENESIS
        return TrustedKey(read_vkey(genesis), "data_directory", genesis, held_elsewhere=False)
    verifier, path = read_vkey_arg(vkey)
    if path is None:
        return TrustedKey(verifier, "vkey_string", None, held_elsewhere=True)
    inside = path.resolve().is_relative_to(data_dir.resolve())
    return TrustedKey(verifier, "vkey_file", path, held_elsewhere=not inside)
