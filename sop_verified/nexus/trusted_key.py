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

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sop_verified.errors import ConfigError, InputError
from sop_verified.nexus.keys import CHECKPOINT_GENESIS, read_vkey
from sop_verified.tools.signed_note import Verifier

__all__ = ["KeySource", "TrustedKey", "read_vkey_arg", "trusted_key"]

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


def read_vkey_arg(value: str) -> tuple[Verifier, Path | None]:
    """Read a verifier key given as a key string or as the path of a file holding one.

    Args:
        value: A key string (it has ``+`` in it) or a file path.

    Returns:
        The verifier, and the file it was read from (None for a key string).

    Raises:
        InputError: no such file, a file without a verifier key, or a malformed key string.
    """
    text = value.strip()
    if "+" in text:
        return Verifier.from_string(text), None
    path = Path(value)
    if not path.is_file():
        raise InputError(f"no verifier key file at `{value}`", where="--vkey", accepted=_ACCEPTED)
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
