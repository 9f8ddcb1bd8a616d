"""A witness directory: its key, the logs it witnesses, its state (``sop witness init``).

Layout (the directory and everything in it private: 0700 and 0600):

- ``witness.key``: the cosigner signer key ``PRIVATE+KEY+<name>+<id>+base64(0x04 || seed)``;
- ``witness.vkey``: its verifier key, the string logs and auditors trust;
- ``witness.toml``: the witnessed logs, each an origin and the verifier keys
  of its checkpoints::

      [[log]]
      origin = "sop.example/log"
      vkeys = ["sop.example/log+1a2b3c4d+AZ..."]

- ``witness.db``: the latest cosigned checkpoint of each log
  (:mod:`sop_verified.tools.witness_store`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from sop_verified.errors import ConfigError, InputError
from sop_verified.tools.cosignature import CosignatureSigner, generate_cosigner
from sop_verified.tools.private_fs import make_private_dir, write_private, write_private_new
from sop_verified.tools.signed_note import Verifier
from sop_verified.tools.witness import Witness
from sop_verified.tools.witness_store import WitnessStore

__all__ = [
    "CONFIG",
    "KEY",
    "STATE",
    "VKEY",
    "WitnessDir",
    "WitnessedLog",
    "add_log",
    "init_witness_dir",
    "load_witness_dir",
]

CONFIG = "witness.toml"
KEY = "witness.key"
VKEY = "witness.vkey"
STATE = "witness.db"

_HEADER = "# The logs this witness cosigns (sop witness init / add-log).\n"


@dataclass(frozen=True, slots=True)
class WitnessedLog:
    """A log the witness cosigns: its checkpoint origin and the keys that sign them."""

    origin: str
    vkeys: tuple[str, ...]


@dataclass(frozen=True)
class WitnessDir:
    """A loaded witness directory: its signer, its logs and its opened state."""

    path: Path
    signer: CosignatureSigner
    logs: tuple[WitnessedLog, ...]
    store: WitnessStore

    @property
    def vkey(self) -> str:
        """The witness's verifier key string."""
        return self.signer.verifier().vkey

    def witness(self) -> Witness:
        """The witness that answers ``add-checkpoint`` from this directory."""
        keys = {log.origin: [Verifier.from_string(v) for v in log.vkeys] for log in self.logs}
        return Witness(self.signer, keys, self.store)

    def close(self) -> None:
        """Close the state database."""
        self.store.close()


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\x7f", "\\u007F")
    return f'"{escaped}"'


def _render(logs: tuple[WitnessedLog, ...]) -> str:
    parts = [_HEADER]
    for log in logs:
        vkeys = ", ".join(_toml_string(v) for v in log.vkeys)
        parts.append(f"\n[[log]]\norigin = {_toml_string(log.origin)}\nvkeys = [{vkeys}]\n")
    return "".join(parts)


def _log(vkey: str, origin: str | None) -> WitnessedLog:
    verifier = Verifier.from_string(vkey)  # raises InputError on a malformed key
    name = verifier.name if origin is None else origin
    if not name or any(c < " " for c in name):
        raise InputError(f"origin `{name!r}` is not a checkpoint origin line")
    return WitnessedLog(name, (verifier.vkey,))


def _merge(logs: list[WitnessedLog], new: WitnessedLog) -> None:
    for i, log in enumerate(logs):
        if log.origin == new.origin:
            logs[i] = WitnessedLog(log.origin, tuple(dict.fromkeys(log.vkeys + new.vkeys)))
            return
    logs.append(new)


def init_witness_dir(path: Path, name: str, logs: list[tuple[str, str | None]]) -> str:
    """Create a witness directory with a fresh key and the given logs.

    Args:
        path: The directory (must not exist or be empty).
        name: The witness's name (a schema-less URL, e.g. ``witness.example/w1``).
        logs: ``(log verifier key, origin or None)`` pairs; the origin defaults to
            the key's name (SOP names its checkpoint key after its origin).

    Returns:
        The witness's verifier key string.

    Raises:
        InputError: a key or origin is malformed.
        ConfigError: the directory already holds a witness or other files.
    """
    parsed: list[WitnessedLog] = []
    for vkey, origin in logs:
        _merge(parsed, _log(vkey, origin))
    skey, vkey = generate_cosigner(name)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ConfigError(f"`{path}` exists and is not an empty directory")
    make_private_dir(path)
    write_private_new(path / KEY, (skey + "\n").encode())
    write_private(path / VKEY, (vkey + "\n").encode())
    write_private(path / CONFIG, _render(tuple(parsed)).encode())
    WitnessStore(path / STATE).close()
    return vkey


def _read_logs(path: Path) -> tuple[WitnessedLog, ...]:
    try:
        data = tomllib.loads((path / CONFIG).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read `{path / CONFIG}`: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"`{path / CONFIG}` is not valid TOML: {exc}") from None
    extra = set(data) - {"log"}
    if extra:
        raise ConfigError(f"`{path / CONFIG}` has unknown keys `{sorted(extra)}`")
    logs: list[WitnessedLog] = []
    for i, entry in enumerate(data.get("log", [])):
        where = f"{CONFIG} log {i + 1}"
        if not isinstance(entry, dict) or set(entry) != {"origin", "vkeys"}:
            raise ConfigError("a log has exactly `origin` and `vkeys`", where=where)
        origin, vkeys = entry["origin"], entry["vkeys"]
        if not isinstance(vkeys, list) or not vkeys or not isinstance(origin, str):
            raise ConfigError("`origin` is text and `vkeys` a non-empty list", where=where)
        if any(log.origin == origin for log in logs):
            raise ConfigError(f"origin `{origin}` is listed twice", where=where)
        for vkey in vkeys:
            if not isinstance(vkey, str):
                raise ConfigError("each of `vkeys` is a verifier key string", where=where)
            _log(vkey, origin)
        logs.append(WitnessedLog(origin, tuple(vkeys)))
    return tuple(logs)


def load_witness_dir(path: Path) -> WitnessDir:
    """Load a witness directory made by :func:`init_witness_dir`.

    Raises:
        ConfigError: the directory, its key or its configuration is missing or invalid.
        InputError: a key in it is malformed.
        StorageError: the state database cannot be opened.
    """
    if not (path / KEY).is_file():
        raise ConfigError(
            f"no witness in `{path}`", accepted=f"run `sop witness init --dir {path}`"
        )
    if (path / KEY).stat().st_mode & 0o077:
        raise ConfigError(f"`{path / KEY}` is readable by others", accepted="mode 0600")
    try:
        signer = CosignatureSigner.from_string((path / KEY).read_text(encoding="utf-8").strip())
    except InputError as exc:
        raise ConfigError(f"`{path / KEY}` holds no cosigner signer key: {exc}") from None
    logs = _read_logs(path)
    return WitnessDir(path, signer, logs, WitnessStore(path / STATE))


def add_log(path: Path, vkey: str, origin: str | None = None) -> WitnessedLog:
    """Add a log (or another key of a log) to a witness directory's configuration.

    Args:
        path: The witness directory.
        vkey: The log's checkpoint verifier key.
        origin: Its origin; default the key's name.

    Returns:
        The log as now configured.

    Raises:
        ConfigError: the directory is not a witness's.
        InputError: the key or the origin is malformed.
    """
    if not (path / KEY).is_file():
        raise ConfigError(
            f"no witness in `{path}`", accepted=f"run `sop witness init --dir {path}`"
        )
    logs = list(_read_logs(path))
    new = _log(vkey, origin)
    _merge(logs, new)
    write_private(path / CONFIG, _render(tuple(logs)).encode())
    return next(log for log in logs if log.origin == new.origin)
